// Package jsonsafe encodes JSON like encoding/json, except that NaN and ±Inf floats — which
// encoding/json refuses ("json: unsupported value: NaN", so a --json report of a diverged
// model used to fail entirely) — are written as null, and the caller is told so it can say it.
package jsonsafe
