package eval

import (
	"fmt"

	"github.com/shears-ml/shears/tokenizer"
)

// ItemsConfig selects how ScoreItems scores each item: generation (Gen, with GenConf) or
// log-likelihood over the candidates (Choice).
type ItemsConfig struct {
	Gen     bool
	GenConf GenConfig
	Choice  ChoiceConfig
}

// ItemError is a failure to score one item; Index is its position in the items.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("item %d: %v", e.Index, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// ScoreItems scores items in order through s and adds each record (its Index set) to sum,
// then calls each (may be nil) with it; "shears eval" and the NLS accuracy evaluator share
// this one loop. A scoring failure is an *ItemError; an error from each is returned as is.
func ScoreItems(s Model, tok tokenizer.Tokenizer, t Task, items []Item, c ItemsConfig, sum *Summary, each func(Record) error) error {
	for i, it := range items {
		var rec Record
		var err error
		if c.Gen {
			rec, err = GenItem(s, tok, t, it, c.GenConf)
		} else {
			rec, err = ChoiceItem(s, tok, t, it, c.Choice)
		}
		if err != nil {
			return &ItemError{Index: i, Err: err}
		}
		rec.Index = i
		sum.Add(rec)
		if each != nil {
			if err := each(rec); err != nil {
				return err
			}
		}
	}
	return nil
}
