// Package warehouse serves warehouse remote functions over the service's own gRPC API:
// Snowflake external functions, BigQuery remote functions and Redshift Lambda UDFs
// (for a Lambda proxy or a direct HTTPS caller). Each endpoint follows its vendor's
// JSON contract exactly, and calls Tokenize or Detokenize through the client it is
// given, so authentication, policy, rate limits and audit apply as for any call.
package warehouse
