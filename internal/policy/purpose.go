package policy

// PurposesOfUse are the HL7 v3 PurposeOfUse codes (code system
// 2.16.840.1.113883.5.8) accepted on a reveal.
var PurposesOfUse = map[string]string{
	"TREAT":     "treatment",
	"ETREAT":    "emergency treatment (break-glass)",
	"HPAYMT":    "healthcare payment",
	"HOPERAT":   "healthcare operations",
	"HRESCH":    "healthcare research",
	"PUBHLTH":   "public health",
	"CAREMGT":   "care management",
	"CLINTRL":   "clinical trial",
	"COVAUTH":   "coverage authorization",
	"HCOMPL":    "compliance",
	"HLEGAL":    "legal",
	"HMARKT":    "marketing",
	"HQUALIMP":  "quality improvement",
	"HSYSADMIN": "system administration",
	"PATRQT":    "patient requested",
	"FAMRQT":    "family requested",
	"PWATRNY":   "power of attorney",
	"HDIRECT":   "directory",
	"DISASTER":  "disaster",
	"THREAT":    "threat",
	"FRAUD":     "fraud",
	"TRAIN":     "training",
	"HTEST":     "test health data",
	"PATSFTY":   "patient safety",
	"PATADMIN":  "patient administration",
	"MEMADMIN":  "member administration",
	"SYSDEV":    "system development",
}

// BreakGlass is the purpose of use that reveals in an emergency.
const BreakGlass = "ETREAT"
