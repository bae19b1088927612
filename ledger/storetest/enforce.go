package storetest

import "testing"

func testEnforce(t *testing.T, newStore Factory) {}
func testEvents(t *testing.T, newStore Factory)  {}
