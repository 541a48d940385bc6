package fhir

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// FHIR R4 date, dateTime and instant lexical forms (http://hl7.org/fhir/R4/datatypes.html):
// a year, year-month, date, or date with a time (seconds required, optional fraction,
// required zone). Instants must carry the full time.
var dateRe = regexp.MustCompile(`^([0-9]{4})(?:-(0[1-9]|1[0-2])(?:-(0[1-9]|[12][0-9]|3[01])(T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)

// Precision of a FHIR date value.
type precision int

const (
	precYear precision = iota
	precMonth
	precDay
	precTime
)

type fhirDate struct {
	year, month, day int
	rest             string // "T10:30:00.123+02:00", kept verbatim
	prec             precision
}

var errBadDate = errors.New("not a valid FHIR date, dateTime or instant")

func parseDate(s string) (fhirDate, error) {
	m := dateRe.FindStringSubmatch(s)
	if m == nil {
		return fhirDate{}, errBadDate
	}
	d := fhirDate{prec: precYear}
	d.year, _ = strconv.Atoi(m[1])
	if m[2] != "" {
		d.month, _ = strconv.Atoi(m[2])
		d.prec = precMonth
	}
	if m[3] != "" {
		d.day, _ = strconv.Atoi(m[3])
		d.prec = precDay
		if t := time.Date(d.year, time.Month(d.month), d.day, 0, 0, 0, 0, time.UTC); t.Day() != d.day {
			return fhirDate{}, errBadDate // 2021-02-30
		}
	}
	if m[4] != "" {
		d.rest, d.prec = m[4], precTime
	}
	return d, nil
}

func (d fhirDate) String() string {
	switch d.prec {
	case precYear:
		return fmt.Sprintf("%04d", d.year)
	case precMonth:
		return fmt.Sprintf("%04d-%02d", d.year, d.month)
	}
	return fmt.Sprintf("%04d-%02d-%02d%s", d.year, d.month, d.day, d.rest)
}

// shiftDate moves a FHIR date value by days, keeping its precision, fraction and zone.
// Day precision and finer move by exactly days (local clock time and zone offset kept);
// year-month values move by the nearest whole number of months and year values by the
// nearest whole number of years, at least one, so that no value stays unchanged and
// the shift by -days restores the value exactly.
func shiftDate(s string, days int) (string, error) {
	d, err := parseDate(s)
	if err != nil {
		return "", err
	}
	switch d.prec {
	case precYear:
		d.year += coarseSteps(days, 365.2425)
	case precMonth:
		m := d.year*12 + d.month - 1 + coarseSteps(days, 30.436875)
		d.year, d.month = m/12, m%12+1
	default:
		t := time.Date(d.year, time.Month(d.month), d.day+days, 0, 0, 0, 0, time.UTC)
		d.year, d.month, d.day = t.Year(), int(t.Month()), t.Day()
	}
	if d.year < 1 || d.year > 9999 {
		return "", errors.New("shifted date leaves the years 0001-9999")
	}
	return d.String(), nil
}

// coarseSteps is days expressed in whole units of unit days, rounded, at least one in
// the direction of days. It is odd in days, so -days undoes it exactly.
func coarseSteps(days int, unit float64) int {
	k := int(math.Round(math.Abs(float64(days)) / unit))
	if k == 0 {
		k = 1
	}
	if days < 0 {
		return -k
	}
	return k
}

// yearOf reduces a date value to its year (Safe Harbor keeps only the year).
func yearOf(s string) (string, error) {
	d, err := parseDate(s)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%04d", d.year), nil
}

// impliesAgeOver89 reports whether a birth date may mean the person is 90 or older at
// asOf: the oldest age the value allows is above 89 (45 CFR 164.514(b)(2)(i)(C)).
func impliesAgeOver89(birth string, asOf time.Time) (bool, error) {
	d, err := parseDate(birth)
	if err != nil {
		return false, err
	}
	// The earliest birth the value allows (start of its year or month): a year or month
	// that may belong to someone over 89 is itself "indicative of such age".
	month, day := d.month, d.day
	switch d.prec {
	case precYear:
		month, day = 1, 1
	case precMonth:
		day = 1
	}
	age := asOf.Year() - d.year
	if int(asOf.Month()) < month || int(asOf.Month()) == month && asOf.Day() < day {
		age--
	}
	return age > 89, nil
}
