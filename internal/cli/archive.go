package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/phivault/tokenizer/internal/app"
	"github.com/phivault/tokenizer/internal/audit"
	"github.com/phivault/tokenizer/internal/config"
	"github.com/phivault/tokenizer/internal/store"
)

func archiveFlags(fs *flag.FlagSet, a *auditArgs) {
	fs.StringVar(&a.month, "month", "", "month to archive, YYYY-MM (it must have ended)")
	fs.StringVar(&a.output, "out", "", "archive file to create (it must not exist)")
	fs.StringVar(&a.checkpointFile, "checkpoint", "", "checkpoint file (the sink) whose checkpoints the chain must match")
}

// auditArchive is `audit archive --month YYYY-MM --out FILE`: it verifies the chain
// through the end of the month's partition, signs checkpoints at the partition's
// boundaries, and writes the partition's events with the checkpoints covering them.
func auditArchive(ctx context.Context, cfg *config.Config, args *auditArgs, stdout, stderr io.Writer) (int, error) {
	month, err := time.Parse("2006-01", args.month)
	if err != nil || args.output == "" {
		fmt.Fprintln(stderr, "tokenizer audit archive: --month YYYY-MM and --out FILE are required")
		return exitUsage, nil
	}
	held, err := heldCheckpoints(cfg, args, stderr)
	if err != nil {
		return 0, err
	}
	a, signer, err := openSigner(ctx, cfg, stderr, "sign checkpoints")
	if err != nil {
		return 0, err
	}
	defer a.Close()
	part, err := closedPartition(ctx, a.Store, month, time.Now())
	if err != nil {
		return 0, err
	}
	res, err := audit.Verify(ctx, a.Store, signer, a.AuditKeys(), 0, part.LastSeq, held)
	if err != nil {
		return 0, err
	}
	if !res.OK {
		fmt.Fprintf(stdout, "FAILED at seq %d: %s\nnot archived\n", res.FirstBadSeq, res.Reason)
		return exitFailure, nil
	}
	h, cps, err := archiveBoundaries(ctx, a, signer, part)
	if err != nil {
		return 0, err
	}
	if err := auditCLI(ctx, a, "archive_audit", nil); err != nil {
		return 0, err
	}
	sum, err := writeArchiveFile(ctx, a, h, cps, args.output)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "archived %s: events %d..%d (%d) to %s, sha256 %s\n", part.Name, part.FirstSeq, part.LastSeq,
		part.LastSeq-part.FirstSeq+1, args.output, sum)
	fmt.Fprintf(stdout, "verify it offline (tokenizer audit verify-archive %s), copy it to archive storage, then, as the table owner:\n"+
		"  ALTER TABLE audit_events DETACH PARTITION %s;\n", args.output, part.Name)
	return exitOK, nil
}

// closedPartition is the attached partition that holds month, which must have ended
// (its range ends by the start of now's month) and hold events.
func closedPartition(ctx context.Context, st *store.Store, month, now time.Time) (store.AuditPartition, error) {
	parts, err := st.AuditPartitions(ctx)
	if err != nil {
		return store.AuditPartition{}, err
	}
	thisMonth := time.Date(now.UTC().Year(), now.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	for _, p := range parts {
		if (p.From.IsZero() || !month.Before(p.From)) && month.Before(p.To) {
			switch {
			case p.To.After(thisMonth):
				return p, fmt.Errorf("partition %s (to %s) has not ended yet", p.Name, p.To.Format(time.DateOnly))
			case p.LastSeq == 0:
				return p, fmt.Errorf("partition %s holds no events", p.Name)
			}
			return p, contiguous(ctx, st, p)
		}
	}
	return store.AuditPartition{}, fmt.Errorf("no attached audit partition holds %s (archived already?)", month.Format("2006-01"))
}

// contiguous checks that p holds every seq from its first to its last, so that
// detaching it leaves the chain whole after it. (It does unless a replica of the
// release before partitioning appended across a month's end.)
func contiguous(ctx context.Context, st *store.Store, p store.AuditPartition) error {
	n, err := st.AuditPartitionEvents(ctx, p)
	if err != nil {
		return err
	}
	if n != p.LastSeq-p.FirstSeq+1 {
		return fmt.Errorf("partition %s holds %d events, not every seq of %d..%d: it cannot be archived and detached alone",
			p.Name, n, p.FirstSeq, p.LastSeq)
	}
	return nil
}

// archiveBoundaries returns the archive's header and the signed checkpoints covering
// the partition. It signs fresh checkpoints at the partition's boundaries (the seq
// before it and its last seq), which the caller verified the chain through, and keeps
// only the checkpoints signed with the same key version, so that one public key
// verifies the whole archive even after the signing key was rotated.
func archiveBoundaries(ctx context.Context, a *app.App, signer audit.Signer, p store.AuditPartition) (audit.ArchiveHeader, []audit.Checkpoint, error) {
	h := audit.ArchiveHeader{Partition: p.Name, To: p.To.Format(time.DateOnly), FirstSeq: p.FirstSeq, LastSeq: p.LastSeq,
		PrevHash: hex.EncodeToString(audit.GenesisHash)}
	if !p.From.IsZero() {
		h.From = p.From.Format(time.DateOnly)
	}
	stored, err := a.Store.Checkpoints(ctx, p.FirstSeq-1, p.LastSeq)
	if err != nil {
		return h, nil, err
	}
	var fresh []audit.Checkpoint
	for _, seq := range []int64{p.FirstSeq - 1, p.LastSeq} {
		if seq == 0 {
			continue // the chain's start: the genesis hash
		}
		hash, err := boundaryHash(ctx, a.Store, stored, seq)
		if err != nil {
			return h, nil, err
		}
		cp, err := audit.SignCheckpoint(ctx, signer, a.Store, seq, hash, time.Now())
		if err != nil {
			return h, nil, err
		}
		fresh = append(fresh, cp)
	}
	h.LastHash = hex.EncodeToString(fresh[len(fresh)-1].Hash)
	if len(fresh) == 2 {
		h.PrevHash = hex.EncodeToString(fresh[0].Hash)
	}
	key := signingKey(fresh[0].Signature)
	cps := slices.DeleteFunc(stored, func(c audit.Checkpoint) bool { return signingKey(c.Signature) != key })
	cps = append(cps, fresh...)
	if pk, ok := a.Provider.(audit.PublicKeyer); ok {
		if pub, err := pk.PublicKey(ctx, fresh[0].Signature); err == nil {
			h.PublicKey = hex.EncodeToString(pub)
		}
	}
	return h, cps, nil
}

// signingKey is the provider and key version of a signature "<provider>:v<n>:<base64>".
func signingKey(signature string) string {
	i := strings.LastIndexByte(signature, ':')
	if i < 0 {
		return ""
	}
	return signature[:i]
}

// boundaryHash is the chain's hash at seq: the stored event's, else (archived) that of
// the signed checkpoint there.
func boundaryHash(ctx context.Context, st *store.Store, cps []audit.Checkpoint, seq int64) ([]byte, error) {
	var hash []byte
	if err := st.ReadAudit(ctx, seq, seq, func(r audit.Row) error { hash = r.Hash; return nil }); err != nil {
		return nil, err
	}
	for _, c := range cps {
		if hash == nil && c.Seq == seq {
			hash = c.Hash
		}
	}
	if hash == nil {
		return nil, fmt.Errorf("event %d is neither stored nor under a signed checkpoint", seq)
	}
	return hash, nil
}

// writeArchiveFile writes the archive to a new file (never over an existing one) and
// returns its SHA-256.
func writeArchiveFile(ctx context.Context, a *app.App, h audit.ArchiveHeader, cps []audit.Checkpoint, name string) (string, error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	err = audit.WriteArchive(ctx, a.Store, h, cps, io.MultiWriter(f, sum))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return "", err
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// auditPartitions is `audit partitions [--ensure]`: it lists the attached partitions,
// after creating this month's and next month's when asked.
func auditPartitions(ctx context.Context, cfg *config.Config, args *auditArgs, stdout, stderr io.Writer) (int, error) {
	st, err := app.OpenStore(ctx, cfg, 2)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	if args.ensure {
		if _, err := st.EnsureAuditPartitions(ctx, 1); err != nil {
			return 0, err
		}
	}
	parts, err := st.AuditPartitions(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range parts {
		from := "-"
		if !p.From.IsZero() {
			from = p.From.Format(time.DateOnly)
		}
		fmt.Fprintf(stdout, "%s\tfrom %s\tto %s\tseq %d..%d\n", p.Name, from, p.To.Format(time.DateOnly), p.FirstSeq, p.LastSeq)
	}
	return exitOK, nil
}

// offlineArchive runs `audit verify-archive FILE`, which needs no configuration,
// database or key provider; offline is false for every other command.
func offlineArchive(sub string, rest []string, stdout, stderr io.Writer) (code int, offline bool) {
	if sub != "verify-archive" {
		return 0, false
	}
	var publicKey, prev string
	fs := flag.NewFlagSet("tokenizer audit verify-archive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&publicKey, "public-key", "", "checkpoint signing public key (ed25519, hex); default: the one in the archive")
	fs.StringVar(&prev, "prev", "", "the previous month's archive, when no signed checkpoint anchors this one's start")
	if err := fs.Parse(rest); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: tokenizer audit verify-archive [--public-key HEX] [--prev FILE] FILE")
		return exitUsage, true
	}
	res, err := verifyArchiveFile(fs.Arg(0), prev, publicKey, stderr)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return exitFailure, true
	}
	h := res.Header
	fmt.Fprintf(stdout, "OK: %s, events %d..%d (%d) chain from %s to %s; %d checkpoint matches\n",
		h.Partition, h.FirstSeq, h.LastSeq, res.Events, h.PrevHash, h.LastHash, res.Checkpoints)
	return exitOK, true
}

// verifyArchiveFile verifies the archive name, and first the previous archive prev
// when given, which must end where name starts.
func verifyArchiveFile(name, prev, keyHex string, stderr io.Writer) (audit.ArchiveResult, error) {
	var pub ed25519.PublicKey
	if keyHex != "" {
		k, err := hex.DecodeString(strings.TrimSpace(keyHex))
		if err != nil || len(k) != ed25519.PublicKeySize {
			return audit.ArchiveResult{}, errors.New("public key: want 32 bytes in hex")
		}
		pub = k
	} else {
		fmt.Fprintln(stderr, "note: verifying with the public key inside the archive; pass --public-key with your own pinned copy")
	}
	var before audit.ArchiveResult
	if prev != "" {
		var err error
		if before, err = verifyOne(prev, pub, ""); err != nil {
			return before, fmt.Errorf("previous archive %s: %w", prev, err)
		}
	}
	res, err := verifyOne(name, pub, before.Header.LastHash)
	if err == nil && prev != "" && res.Header.FirstSeq != before.Header.LastSeq+1 {
		err = fmt.Errorf("the previous archive ends at seq %d, this one starts at %d", before.Header.LastSeq, res.Header.FirstSeq)
	}
	return res, err
}

func verifyOne(name string, pub ed25519.PublicKey, prevLast string) (audit.ArchiveResult, error) {
	f, err := os.Open(name)
	if err != nil {
		return audit.ArchiveResult{}, err
	}
	defer f.Close()
	return audit.VerifyArchive(f, pub, prevLast)
}
