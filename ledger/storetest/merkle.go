package storetest

import "testing"

func testMerkle(t *testing.T, newStore Factory) {}
