// Package emailaddr decides which email addresses onboard accepts: practical
// addresses as people type them into a form or a spreadsheet, local@domain
// and nothing else. It refuses display names, comments, quoted local parts,
// IP literals and obsolete syntax, which RFC 5322 allows but which no
// customer portal login should be. It accepts internationalised domains
// (sent as punycode, see ASCII) but not internationalised local parts
// (RFC 6531): SendGrid's mail send takes only ASCII addresses (its OpenAPI
// types them as format "email", not "idn-email", and it answers 400 to
// one), so such an address could never be invited.
package emailaddr

import (
	"errors"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalid is the reason every refused address gives.
var ErrInvalid = errors.New("Customer Email must be valid")

// Limits from RFC 5321: the local part is at most 64 octets, a domain 255
// (253 as text without the trailing dot), a label 63, a forward path 254.
const (
	maxLocal   = 64
	maxDomain  = 253
	maxLabel   = 63
	maxAddress = 254
)

var profile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.StrictDomainName(true))

// Validate returns nil for an acceptable address and an error saying why
// not otherwise (errors.Is(err, ErrInvalid) holds for every refusal).
func Validate(s string) error {
	_, err := parse(s)
	return err
}

// Normalize is the form addresses are compared in: trimmed of blanks, lower-cased and
// with the domain in its ASCII (punycode) form, so that one mailbox typed
// two ways is "already in use". Invalid input is only trimmed and
// lower-cased.
func Normalize(s string) string {
	a, err := parse(s)
	if err != nil {
		return strings.ToLower(trimBlanks(s))
	}
	return strings.ToLower(a.local) + "@" + a.asciiDomain
}

// ASCII is the address as it goes to SendGrid: trimmed, and an
// internationalised domain in its ASCII (punycode) form, so that
// "jurgen@bücher.example" is sent as "jurgen@xn--bcher-kva.example"; an
// address already ASCII is kept as typed. It fails as Validate does.
func ASCII(s string) (string, error) {
	a, err := parse(s)
	if err != nil {
		return "", err
	}
	if t := trimBlanks(s); isASCII(t) {
		return t, nil
	}
	return a.local + "@" + a.asciiDomain, nil
}

type address struct{ local, asciiDomain string }

func invalid(why string) error { return errors.Join(ErrInvalid, errors.New(why)) }

// trimBlanks drops the spaces and tabs people leave around a value, but not
// line breaks: an address with a CR or LF in it is refused, never mended.
func trimBlanks(s string) string { return strings.Trim(s, " \t") }

func parse(s string) (address, error) {
	s = trimBlanks(s)
	if s == "" {
		return address{}, invalid("empty address")
	}
	if !utf8.ValidString(s) {
		return address{}, invalid("not UTF-8")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 || strings.Count(s, "@") != 1 {
		return address{}, invalid("an address has exactly one @")
	}
	local, domain := s[:at], s[at+1:]
	if err := checkLocal(local); err != nil {
		return address{}, err
	}
	ascii, err := checkDomain(domain)
	if err != nil {
		return address{}, err
	}
	if len(local)+1+len(ascii) > maxAddress {
		return address{}, invalid("address longer than 254 octets")
	}
	return address{local: local, asciiDomain: ascii}, nil
}

// atext of RFC 5322: ASCII only (see the package comment).
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r):
		return true
	}
	return false
}

func checkLocal(local string) error {
	switch {
	case local == "":
		return invalid("empty local part")
	case len(local) > maxLocal:
		return invalid("local part longer than 64 octets")
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return invalid("local part has a leading, trailing or double dot")
	}
	if !isASCII(local) {
		return invalid("local part is not ASCII: SendGrid sends to no internationalised local part")
	}
	for _, r := range local {
		if r != '.' && !isAtext(r) {
			return invalid("local part has a character that is not allowed unquoted")
		}
	}
	return nil
}

func checkDomain(domain string) (string, error) {
	if domain == "" {
		return "", invalid("empty domain")
	}
	if strings.HasPrefix(domain, "[") {
		return "", invalid("IP literals are not accepted")
	}
	ascii := domain
	if !isASCII(domain) {
		var err error
		if ascii, err = profile.ToASCII(domain); err != nil {
			return "", invalid("not a valid internationalised domain")
		}
	}
	if len(ascii) > maxDomain {
		return "", invalid("domain longer than 253 octets")
	}
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		// RFC 5321 allows it, but no dotless domain takes mail from the
		// Internet (ICANN bars them): a@localhost, or john@gmail with
		// its .com forgotten, would be an invitation nobody receives.
		return "", invalid("the domain has no dot")
	}
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return "", err
		}
	}
	// A top-level label of digits only would make the domain an IP address.
	if allDigits(labels[len(labels)-1]) {
		return "", invalid("the top-level domain is numeric")
	}
	return strings.ToLower(ascii), nil
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return invalid("domain has an empty label")
	case len(l) > maxLabel:
		return invalid("domain label longer than 63 octets")
	case l[0] == '-' || l[len(l)-1] == '-':
		return invalid("domain label starts or ends with a hyphen")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return invalid("domain has a character other than letters, digits and hyphens")
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
