package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
)

// Transit convergent encryption is the stateless baseline `tokenizer bench` measures
// the service against: the same value gives the same ciphertext (the nearest Vault
// equivalent of a static token), and Vault stores nothing per value.

// EnsureConvergentKey creates the derived, convergent aes256-gcm96 Transit key name.
func (c *Client) EnsureConvergentKey(ctx context.Context, name string) error {
	_, err := c.write(ctx, "create convergent key", c.transit("keys", name), map[string]any{
		"type": "aes256-gcm96", "derived": true, "convergent_encryption": true,
	})
	if errors.Is(err, errEmpty) {
		return nil // Vault answers a key creation with no body
	}
	return err
}

// EncryptBatch encrypts plaintexts in one Transit batch under key and derivation
// context, and returns the ciphertexts in order.
func (c *Client) EncryptBatch(ctx context.Context, key string, derivation []byte, plaintexts []string) ([]string, error) {
	ctx64 := base64.StdEncoding.EncodeToString(derivation)
	in := make([]map[string]any, len(plaintexts))
	for i, p := range plaintexts {
		in[i] = map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(p)), "context": ctx64}
	}
	s, err := c.write(ctx, "encrypt", c.transit("encrypt", key), map[string]any{"batch_input": in})
	if err != nil {
		return nil, err
	}
	results, _ := s.Data["batch_results"].([]any)
	if len(results) != len(plaintexts) {
		return nil, fmt.Errorf("vault encrypt: %d results for %d inputs", len(results), len(plaintexts))
	}
	out := make([]string, len(results))
	for i, r := range results {
		m, _ := r.(map[string]any)
		out[i], _ = m["ciphertext"].(string)
	}
	return out, nil
}

// DecryptBatch decrypts ciphertexts in one Transit batch (the results are discarded:
// the baseline measures the call).
func (c *Client) DecryptBatch(ctx context.Context, key string, derivation []byte, ciphertexts []string) error {
	ctx64 := base64.StdEncoding.EncodeToString(derivation)
	in := make([]map[string]any, len(ciphertexts))
	for i, ct := range ciphertexts {
		in[i] = map[string]any{"ciphertext": ct, "context": ctx64}
	}
	_, err := c.write(ctx, "decrypt", c.transit("decrypt", key), map[string]any{"batch_input": in})
	return err
}
