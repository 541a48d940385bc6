package authn

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// uriScheme matches a leading URI scheme and colon (RFC 3986 §3.1).
var uriScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// looksLikeURI reports whether a certificate CN could be mistaken for a URI identity.
func looksLikeURI(cn string) bool { return uriScheme.MatchString(cn) || strings.Contains(cn, "://") }

// ClientAddressFrom is the client's address for the audit log. x-forwarded-for is
// believed only from the in-process REST gateway (internal: it sets the header itself
// from the connection it accepted) or from a peer inside trusted (configured proxies);
// from anyone else it is the caller's own claim, and the peer address is used.
func ClientAddressFrom(ctx context.Context, internal bool, trusted []netip.Prefix) string {
	peerAddr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		peerAddr = p.Addr.String()
	}
	if !internal && !peerTrusted(peerAddr, trusted) {
		return peerAddr
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("x-forwarded-for"); len(v) > 0 {
			parts := strings.Split(v[len(v)-1], ",")
			if a := strings.TrimSpace(parts[len(parts)-1]); a != "" && len(a) <= 64 {
				return a
			}
		}
	}
	return peerAddr
}

func peerTrusted(addr string, trusted []netip.Prefix) bool {
	if len(trusted) == 0 || addr == "" {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
