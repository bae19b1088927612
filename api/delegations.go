package api

import (
	"net/http"
)

func (s *Server) createDelegation(w http.ResponseWriter, r *http.Request, _ principal) error {
	return &Error{Status: http.StatusNotImplemented, Code: CodeInternal, Detail: "not yet"}
}

func (s *Server) listDelegations(w http.ResponseWriter, r *http.Request, _ principal) error {
	return &Error{Status: http.StatusNotImplemented, Code: CodeInternal, Detail: "not yet"}
}

func (s *Server) revokeDelegation(w http.ResponseWriter, r *http.Request, _ principal) error {
	return &Error{Status: http.StatusNotImplemented, Code: CodeInternal, Detail: "not yet"}
}
