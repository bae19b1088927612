package zzmerklepg

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/caracal-dev/caracal/ledger/sqlite"
	"github.com/caracal-dev/caracal/ledger/storetest"
)

func TestInsertHome(t *testing.T) {
	s, err := sqlite.Open(context.Background(), os.Getenv("H")+"/caracal.db", sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := time.Now()
	storetest.OpenMerkleDB(t, s).InsertEvents(t, 0, 10000)
	t.Log("insert", time.Since(st))
}
