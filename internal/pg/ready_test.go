package pg

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWaitReadyNeverShowsPassword(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-Pa55word"
	// A port with nothing listening: every attempt fails until the context ends.
	port := unusedPort(t)

	tests := []struct {
		name, conn string
	}{
		{"url", "postgres://app:" + secret + "@127.0.0.1:" + strconv.Itoa(port) + "/app?sslmode=disable"},
		{"keyword/value", "host=127.0.0.1 port=" + strconv.Itoa(port) + " user=app password=" + secret + " dbname=app sslmode=disable"},
		{"unparsable url", "postgres://app:" + secret + "@127.0.0.1:notaport/app"},
		{"unparsable keyword/value", "host=127.0.0.1 password=" + secret + " sslmode=bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			defer cancel()
			err := WaitReady(ctx, tt.conn)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error shows the password: %v", err)
			}
			if strings.HasPrefix(tt.name, "unparsable") {
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v does not wrap the context's error", err)
			}
			if !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(err.Error(), "refused") {
				t.Errorf("error %q does not name the address and the last failure", err)
			}
		})
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	got := scrub("bad password p@ss/w rd and p%40ss%2Fw+rd", "p@ss/w rd")
	if strings.Contains(got, "p@ss") || strings.Contains(got, "p%40ss") {
		t.Fatalf("scrub left the password in %q", got)
	}
}

func TestCheckLoginRetriesUntilContextEnds(t *testing.T) {
	t.Parallel()
	port := unusedPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	err := CheckLogin(ctx, Login{Host: "127.0.0.1", Port: port, User: "app", Password: "s3cr3t", Database: "app"})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrAuth) {
		t.Fatalf("error %v: want the context's error, not ErrAuth", err)
	}
	if want := "login as app at 127.0.0.1:" + strconv.Itoa(port); !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("error %q does not start with %q and name the last failure", err, want)
	}
}

// unusedPort is a port on 127.0.0.1 that nothing listens on.
func unusedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}
