package memory_test

import (
	"testing"

	"github.com/phivault/tokenizer/internal/store/memory"
	"github.com/phivault/tokenizer/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) storetest.Store { return memory.New() })
}
