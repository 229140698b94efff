// Package progress is the one shape in which long work reports how far it got: training steps,
// search evaluations, calibration windows. Libraries call a Func after each unit of work; the
// CLI draws every Event with its one progress bar. It sits below every stage package (it
// imports nothing), so nls, calibrate and pipeline all speak it; pipeline re-exports it.
package progress

// Event is one unit of long work done.
type Event struct {
	// Stage names what runs, as a bar's label: "train", "search hill-climb", "block 3/8".
	Stage string
	// Done units (optimizer steps, new evaluations, calibration windows) of Total.
	Done, Total int
	// Detail is the latest unit in a few words ("epoch 1 · loss 2.3100 · lr 3.00e-04").
	Detail string
	// Saved is true when a checkpoint covers the Done units (the work resumes from here).
	Saved bool
}

// Func receives Events; a nil Func means nobody is listening.
type Func func(Event)

// Report calls f with e when f is set.
func (f Func) Report(e Event) {
	if f != nil {
		f(e)
	}
}
