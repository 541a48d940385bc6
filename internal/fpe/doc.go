// Package fpe implements the FF1 format-preserving encryption mode of NIST SP 800-38G
// Rev.1 over AES, for any alphabet of 2 to 65,536 symbols. One *FF1 is safe for
// concurrent use; errors name sizes and positions, never input.
package fpe
