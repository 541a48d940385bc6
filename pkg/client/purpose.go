package client

import "errors"

// Purpose is an HL7 v3 PurposeOfUse code (code system 2.16.840.1.113883.5.8), the
// reason a value is revealed; it is recorded in the audit log with the reveal.
type Purpose string

// Common purposes of use; the server accepts the whole HL7 v3 set and the caller's
// policy says which it may invoke.
const (
	Treatment          Purpose = "TREAT"
	EmergencyTreatment Purpose = "ETREAT" // break-glass: needs a justification
	Payment            Purpose = "HPAYMT"
	Operations         Purpose = "HOPERAT"
	Research           Purpose = "HRESCH"
	PublicHealth       Purpose = "PUBHLTH"
)

// ErrNoPurpose is returned, before anything is sent, by a reveal without a purpose of use.
var ErrNoPurpose = errors.New("client: purpose of use is required for every reveal")

// ErrNoJustification is returned, before anything is sent, by a break-glass reveal
// (EmergencyTreatment) without a justification.
var ErrNoJustification = errors.New("client: a justification is required with purpose of use ETREAT")
