package cli

import (
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"
)

// Set at link time by `make build` and `make image`:
// -ldflags "-X github.com/phivault/tokenizer/internal/cli.buildVersion=v1.2.3 -X ...buildCommit=abc".
var (
	buildVersion string
	buildCommit  string
)

// BuildInfo describes the running binary.
type BuildInfo struct {
	Version   string // release version, or the module version, or "devel"
	Commit    string // VCS revision, or "unknown"
	GoVersion string // the Go toolchain that built it
	Platform  string // GOOS/GOARCH
}

// ReadBuildInfo returns what the binary knows about its own build: link-time values
// first, then the VCS stamp Go embeds (absent with -buildvcs=false).
func ReadBuildInfo() BuildInfo {
	b := BuildInfo{Version: Version(), Commit: "unknown", GoVersion: goruntime.Version(), Platform: goruntime.GOOS + "/" + goruntime.GOARCH}
	if buildVersion != "" {
		b.Version = buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && b.Commit != "unknown" {
			b.Commit += "-dirty"
		}
	}
	if buildCommit != "" {
		b.Commit = buildCommit
	}
	return b
}

// printVersion writes the version, commit, Go version and platform, one per line.
func printVersion(w io.Writer) int {
	b := ReadBuildInfo()
	fmt.Fprintf(w, "tokenizer %s\ncommit: %s\ngo: %s\nplatform: %s\n", b.Version, b.Commit, b.GoVersion, b.Platform)
	return exitOK
}
