# tokenizer — see README.md. Targets are plain and offline once modules are downloaded.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TOOLS_BIN := $(CURDIR)/.cache/tools
PROTOC ?= protoc
PROTO_FILES := $(wildcard proto/tokenizer/v1/*.proto)
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable

VAULT_BIN := $(CURDIR)/.cache/vaultdev/vault

.PHONY: run run-vault test bench proto proto-check lint build tools vault fhir-validator image

# Version and commit linked into the binary (`tokenizer version`) and the image labels.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_TAG ?= tokenizer:dev
LDFLAGS := -s -w -X github.com/phivault/tokenizer/internal/cli.buildVersion=$(VERSION) -X github.com/phivault/tokenizer/internal/cli.buildCommit=$(REVISION)

## run: start the service in development mode (local keys, migrations applied, plaintext)
run: build
	$(BIN)/tokenizer serve

## build: compile the tokenizer binary into ./bin
build:
	$(GO) build -o $(BIN)/tokenizer ./cmd/tokenizer

## test: run every test (real PostgreSQL at $$TEST_DATABASE_URL, real Vault dev server), race detector on
test: tools vault fhir-validator
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	cd bench && $(GO) vet ./... && $(GO) test -count=1 ./...
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

## image: build the container image offline into bin/tokenizer-image.tar (OCI layout + docker load), no Docker engine
image:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/linux/tokenizer ./cmd/tokenizer
	cd deploy && $(GO) run ./cmd/mkimage --binary $(BIN)/linux/tokenizer --out $(BIN)/tokenizer-image.tar \
	  --tag $(IMAGE_TAG) --version $(VERSION) --revision $(REVISION)

## bench: run the Go benchmarks, including FF1 against github.com/capitalone/fpe
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...
	cd bench && $(GO) test -run '^$$' -bench . -benchmem ./...

## vault: build HashiCorp Vault v1.13.0 from tools/vaultdev (only when its go.sum changes)
vault: $(VAULT_BIN)
$(VAULT_BIN): tools/vaultdev/go.mod tools/vaultdev/go.sum tools/vaultdev/main.go
	cd tools/vaultdev && $(GO) build -o $(VAULT_BIN) .

## run-vault: start a Vault dev server (Transit, keys created) and the service against it
run-vault: build vault
	bash scripts/run-vault.sh

## fhir-validator: install the pinned FHIR validator (npm package fhir) used by the audit export test
fhir-validator: tools/fhir-validate/node_modules/.package-lock.json
tools/fhir-validate/node_modules/.package-lock.json: tools/fhir-validate/package-lock.json
	cd tools/fhir-validate && npm ci --no-audit --no-fund --silent

## tools: build the pinned protoc plugins from tools/go.mod
tools:
	cd tools && GOBIN=$(TOOLS_BIN) $(GO) install tool

## proto: regenerate Go, gateway and OpenAPI code from proto/ (needs protoc)
proto: tools
	$(PROTOC) -I proto -I third_party -I /usr/include \
	  --plugin=protoc-gen-go=$(TOOLS_BIN)/protoc-gen-go \
	  --plugin=protoc-gen-go-grpc=$(TOOLS_BIN)/protoc-gen-go-grpc \
	  --plugin=protoc-gen-grpc-gateway=$(TOOLS_BIN)/protoc-gen-grpc-gateway \
	  --plugin=protoc-gen-openapiv2=$(TOOLS_BIN)/protoc-gen-openapiv2 \
	  --go_out=proto --go_opt=paths=source_relative \
	  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	  --grpc-gateway_out=proto --grpc-gateway_opt=paths=source_relative \
	  --openapiv2_out=proto --openapiv2_opt=allow_merge=true,merge_file_name=tokenizer/v1/tokenizer,json_names_for_fields=false \
	  $(PROTO_FILES)

## proto-check: fail if the committed generated code differs from a fresh `make proto`
proto-check: proto
	@git diff --exit-code -- proto || { echo "generated code is stale: run make proto and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files: run make proto and commit" >&2; exit 1; }

## lint: gofmt and go vet
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	cd deploy && $(GO) vet ./...
