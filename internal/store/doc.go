// Package store is the token vault in PostgreSQL: migrations, data keys, mappings.
// It is the only package that imports pgx. Its errors never carry PostgreSQL's message
// or detail text, which can quote row values; they carry the SQLSTATE and the operation.
package store
