#!/usr/bin/env bash
# make run-vault: a HashiCorp Vault dev server with Transit, and the service using it.
# The dev Vault keeps its keys in memory, so the service's database (tokenizer_vault)
# is recreated at each start: data keys wrapped by a previous dev Vault cannot unwrap.
set -euo pipefail
cd "$(dirname "$0")/.."
VAULT_ADDR=${VAULT_ADDR:-http://127.0.0.1:8200}
ROOT=dev-root-token
DB=${TOKENIZER_VAULT_DATABASE:-tokenizer_vault}
export VAULT_ADDR VAULT_TOKEN=$ROOT

.cache/vaultdev/vault server -dev -dev-root-token-id="$ROOT" -dev-listen-address="${VAULT_ADDR#http://}" -dev-no-store-token >.cache/vaultdev/server.log 2>&1 &
vault_pid=$!
trap 'kill $vault_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  .cache/vaultdev/vault status >/dev/null 2>&1 && break
  sleep 0.1
done
.cache/vaultdev/vault secrets enable transit >/dev/null
.cache/vaultdev/vault write -f transit/keys/tokenizer-kek type=aes256-gcm96 >/dev/null
.cache/vaultdev/vault write -f transit/keys/tokenizer-audit type=ed25519 >/dev/null
echo "Vault dev server at $VAULT_ADDR (root token $ROOT, log .cache/vaultdev/server.log)"

psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
TOKENIZER_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" \
TOKENIZER_KEYS_PROVIDER=vault TOKENIZER_KEYS_VAULT_ADDRESS="$VAULT_ADDR" TOKENIZER_KEYS_VAULT_TOKEN="$ROOT" \
  bin/tokenizer serve --dev
