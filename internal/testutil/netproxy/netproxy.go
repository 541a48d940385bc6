// Package netproxy is a TCP proxy for tests that can cut every connection and refuse
// new ones, to take a dependency (PostgreSQL, Vault) away from a running service, or
// freeze the link (bytes stop flowing both ways, connections stay open: a partition).
package netproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards a loopback port to a target address.
type Proxy struct {
	target string
	lis    net.Listener
	mu     sync.Mutex
	up     bool
	conns  map[net.Conn]struct{}
	frozen bool
	thawed *sync.Cond // broadcast when frozen turns false
}

// New starts a proxy to target; it is closed when the test ends.
func New(tb testing.TB, target string) *Proxy {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("netproxy: listen: %v", err)
	}
	p := &Proxy{target: target, lis: lis, up: true, conns: map[net.Conn]struct{}{}}
	p.thawed = sync.NewCond(&p.mu)
	go p.accept()
	tb.Cleanup(func() { lis.Close(); p.Thaw(); p.Down() })
	return p
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Down cuts every open connection; new ones are accepted and closed at once.
func (p *Proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = false
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]struct{}{}
}

// Up lets connections through again.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.up = true
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if !up {
			c.Close()
			continue
		}
		go p.forward(c)
	}
}

// Freeze stops every byte in both directions, on open connections and on new ones,
// without closing anything: what a silent network partition looks like to a client.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	p.frozen = true
	p.mu.Unlock()
}

// Thaw lets bytes flow again.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	p.frozen = false
	p.thawed.Broadcast()
	p.mu.Unlock()
}

func (p *Proxy) waitThawed() {
	p.mu.Lock()
	for p.frozen {
		p.thawed.Wait()
	}
	p.mu.Unlock()
}

// pipe copies src to dst, holding every chunk while the link is frozen.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitThawed()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) forward(c net.Conn) {
	p.waitThawed()
	t, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if !p.up {
		p.mu.Unlock()
		c.Close()
		t.Close()
		return
	}
	p.conns[c], p.conns[t] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { p.pipe(t, c); t.Close(); c.Close() }()
	p.pipe(c, t)
	t.Close()
	c.Close()
}
