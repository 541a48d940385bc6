// Command mkimage builds the tokenizer's container image offline (`make image`), from a
// static binary, as one tar that `docker load`, `kind load image-archive`, podman, skopeo
// (oci-archive:) and crane accept. It is a separate program, not a tokenizer
// subcommand, so that the service binary carries no image-building code.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/phivault/tokenizer/deploy/image"
)

func main() {
	var o image.Options
	flag.StringVar(&o.Binary, "binary", "bin/linux/tokenizer", "static tokenizer binary (CGO_ENABLED=0)")
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates (PEM) to ship")
	flag.StringVar(&o.Version, "version", "devel", "image version label")
	flag.StringVar(&o.Revision, "revision", "unknown", "VCS revision label")
	flag.StringVar(&o.Source, "source", "https://github.com/phivault/tokenizer", "source repository label")
	flag.StringVar(&o.Arch, "arch", "", "GOARCH of the binary (default: this machine's)")
	ref := flag.String("tag", "tokenizer:dev", "image reference recorded in the archive")
	out := flag.String("out", "bin/tokenizer-image.tar", "archive to write")
	flag.Parse()

	// SOURCE_DATE_EPOCH (reproducible-builds.org) fixes every timestamp; default 0.
	o.Created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkimage: SOURCE_DATE_EPOCH: want seconds since 1970")
			os.Exit(2)
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	img, err := image.Build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	digest, err := image.WriteArchive(img, *ref, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s@%s\n", *out, *ref, digest)
}
