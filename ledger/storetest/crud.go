package storetest

import "testing"

func testAgents(t *testing.T, newStore Factory)    {}
func testPolicies(t *testing.T, newStore Factory)  {}
func testPricebook(t *testing.T, newStore Factory) {}
