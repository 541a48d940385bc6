# Vault policy of the tokenizer service: data keys under the KEK, and audit checkpoint
# signatures. Nothing else: it can neither read nor export the keys themselves.
path "transit/datakey/wrapped/tokenizer-kek" {
  capabilities = ["update"]
}
path "transit/decrypt/tokenizer-kek" {
  capabilities = ["update"]
}
path "transit/rewrap/tokenizer-kek" {
  capabilities = ["update"]
}
path "transit/sign/tokenizer-audit" {
  capabilities = ["update"]
}
path "transit/verify/tokenizer-audit" {
  capabilities = ["update"]
}
