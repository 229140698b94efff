package gradcheck

// The pass marks on Result.MaxRelErr (max |analytic − numeric| / max |numeric| over a tensor's
// checked elements): the one table every gradient check in the repository uses.
//
// Derivation. A central difference (L(x+h) − L(x−h)) / 2h has truncation error ≈ h²·|L”'|/6
// and rounding error ≈ u·|L|/h, where u is the unit roundoff (1.1e-16 in float64, 6e-8 in
// float32); both are divided by the gradient scale G = max |numeric| to give the relative error.
//
//   - TolOp64, one op in float64 (h = 1e-6, |L| ≲ 10, G ≳ 0.1, |L”'| ≲ 10): 2e-12 + 1e-8 ≈ 1e-8;
//     1e-6 leaves two orders of margin.
//   - TolOp32, one op in float32 (ops onnxruntime's CPU provider runs only in float; h = 1e-2):
//     u·|L|/h ≈ 6e-5 and h²·|L”'|/6 ≈ 2e-4, relative to G ≈ 1: 5e-3.
//   - TolModel64, a whole model's loss in float64 (h = 1e-6): |L| up to ≈ 100 (Σ w ⊙ logits) or
//     ≈ ln(vocab) for the causal-LM loss, but a tensor's gradient scale can be as small as 1e-4
//     and the composition is deep (larger |L”'|): 1e-16·100/1e-6/1e-4 ≈ 1e-4 in the worst case
//     seen, and typical errors are 1e-8..1e-6.
//   - TolModel32, a whole model in float32 (h = 1e-2): ≈ 1e-4 of noise on gradients that may
//     be ≈ 1e-3: 5e-2.
//
// A wrong rule (a missing term, a wrong sign, axis or transpose) is off by O(1), far above every
// mark; the sabotage test in transform/autodiff shows a rule scaled by 1.01 fails the op checks
// (1e-2 > TolOp64, TolOp32), and that a NaN gradient fails them all.
const (
	TolOp64    = 1e-6
	TolOp32    = 5e-3
	TolModel64 = 1e-4
	TolModel32 = 5e-2
)
