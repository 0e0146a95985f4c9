// Temporary debugging aid. Deleted before handing back.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	ctx := context.Background()
	b, err := pgx.Connect(ctx, os.Args[1])
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	b.Exec(ctx, "SET client_connection_check_interval = 500"); go func() { _, err := b.Exec(ctx, "SELECT pg_sleep(10) /* rst */"); done <- err }()
	time.Sleep(time.Second)
	raw := b.PgConn().Conn().(*net.TCPConn)
	raw.SetLinger(0)
	raw.Close()
	fmt.Println("query:", <-done)
}
