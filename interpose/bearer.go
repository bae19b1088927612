package interpose

import "strings"

// BearerToken returns the credential of an Authorization header using the
// Bearer scheme. The scheme name is case-insensitive (RFC 9110 §11.1), so
// "bearer crk_…" is accepted like "Bearer crk_…". ok is false for another
// scheme or an empty credential.
func BearerToken(authorization string) (token string, ok bool) {
	const scheme = "bearer "
	if len(authorization) <= len(scheme) || !strings.EqualFold(authorization[:len(scheme)], scheme) {
		return "", false
	}
	token = strings.TrimSpace(authorization[len(scheme):])
	return token, token != ""
}
