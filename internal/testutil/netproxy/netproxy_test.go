package netproxy_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/phivault/tokenizer/internal/testutil/netproxy"
)

// echoServer echoes every line back, prefixed with "echo: ".
func echoServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, "echo: "+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// roundTrip sends msg on c and reads one line back.
func roundTrip(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestProxy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, p *netproxy.Proxy)
	}{
		{"forwards both ways", func(t *testing.T, p *netproxy.Proxy) {
			c := dial(t, p.Addr())
			for _, msg := range []string{"one", "two"} {
				got, err := roundTrip(c, msg)
				require.NoError(t, err)
				assert.Equal(t, "echo: "+msg+"\n", got)
			}
		}},
		{"Down cuts open connections", func(t *testing.T, p *netproxy.Proxy) {
			c := dial(t, p.Addr())
			_, err := roundTrip(c, "before")
			require.NoError(t, err)
			p.Down()
			_, err = roundTrip(c, "after")
			assert.Error(t, err)
		}},
		{"Down refuses new connections", func(t *testing.T, p *netproxy.Proxy) {
			p.Down()
			c := dial(t, p.Addr()) // accepted by the kernel, then closed by the proxy
			_, err := roundTrip(c, "hello")
			assert.Error(t, err)
		}},
		{"Up restores", func(t *testing.T, p *netproxy.Proxy) {
			p.Down()
			_, err := roundTrip(dial(t, p.Addr()), "down")
			require.Error(t, err)
			p.Up()
			got, err := roundTrip(dial(t, p.Addr()), "up")
			require.NoError(t, err)
			assert.Equal(t, "echo: up\n", got)
		}},
		{"unreachable target closes the client", func(t *testing.T, _ *netproxy.Proxy) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			dead := lis.Addr().String()
			lis.Close()
			p := netproxy.New(t, dead)
			_, err = roundTrip(dial(t, p.Addr()), "anyone")
			assert.Error(t, err)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := netproxy.New(t, echoServer(t))
			assert.NotEmpty(t, p.Addr())
			tc.run(t, p)
		})
	}
}
