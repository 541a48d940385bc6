package keys

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
)

// ID is a short public fingerprint of the key file's key (8 hex digits): the same file
// always gives the same ID, another file another one. Development names its database
// after it, so that a database is only ever opened with the key that wrapped its data
// keys. It reveals nothing of the key: it is derived from the public half of the
// signing key.
func (l *Local) ID() string {
	sum := sha256.Sum256(append([]byte("tokenizer/local-id/v1"), l.sign.Public().(ed25519.PublicKey)...))
	return hex.EncodeToString(sum[:4])
}
