// Package grant is time-boxed, approved access to one data subject's tokens: a grant
// lets a principal (or principal pattern) reveal a subject's tokens in named classes
// for named purposes between not_before and not_after, once N distinct approvers other
// than its requester have approved it, until revoked. Break-glass grants are created
// by their own grantee with a justification, active at once, short, and flagged for
// review. The policy file decides which classes need a grant (detokenize_granted);
// this package decides whether a grant covers a reveal (Check), purely.
package grant
