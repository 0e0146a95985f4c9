package tunnel

import (
	"bytes"
	"net"
	"testing"
)

// recordingConn records each Write it is given.
type recordingConn struct {
	net.Conn
	writes [][]byte
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func frame(first byte, payload int) []byte {
	f := make([]byte, spdyHeaderLen+payload)
	f[0] = first
	f[5], f[6], f[7] = byte(payload>>16), byte(payload>>8), byte(payload)
	for i := range payload {
		f[spdyHeaderLen+i] = byte(i)
	}
	return f
}

func TestFrameWriterWritesWholeFrames(t *testing.T) {
	t.Parallel()
	small, big, empty := frame(0x00, 5), frame(0x80, 70000), frame(0x80, 0)
	tests := []struct {
		name   string
		pieces [][]byte // what the framer writes
		want   [][]byte // what reaches the connection
	}{
		{"data frame in three writes", [][]byte{small[:4], small[4:8], small[8:]}, [][]byte{small}},
		{"whole frame at once", [][]byte{small}, [][]byte{small}},
		{"frame with no payload", [][]byte{empty[:4], empty[4:]}, [][]byte{empty}},
		{"payload over 64 KiB", [][]byte{big[:4], big[4:8], big[8:1000], big[1000:]}, [][]byte{big}},
		{"two frames, second split", [][]byte{append(append([]byte{}, small...), big[:3]...), big[3:]}, [][]byte{small, big}},
		{"header split mid length", [][]byte{big[:6], big[6:]}, [][]byte{big}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rc := &recordingConn{}
			w := &frameWriter{Conn: rc}
			for _, p := range tt.pieces {
				if n, err := w.Write(p); err != nil || n != len(p) {
					t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
				}
			}
			if len(rc.writes) != len(tt.want) {
				t.Fatalf("%d writes reached the connection, want %d", len(rc.writes), len(tt.want))
			}
			for i := range tt.want {
				if !bytes.Equal(rc.writes[i], tt.want[i]) {
					t.Fatalf("write %d: %d bytes, want frame of %d bytes", i, len(rc.writes[i]), len(tt.want[i]))
				}
			}
			if len(w.buf) != 0 {
				t.Fatalf("%d bytes left buffered", len(w.buf))
			}
		})
	}
}
