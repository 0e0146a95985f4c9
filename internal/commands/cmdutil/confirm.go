package cmdutil

import (
	"errors"

	"github.com/stackblaze/stackblaze/internal/output"
)

// Confirmation is the consent a command needs before it destroys or restarts something: a yes
// typed at a terminal, or --yes (or "yes: true" in the configuration) anywhere else. A command
// checks it twice: Refuse before anything is sent to the cluster, Ask once it knows what to say.
type Confirmation struct {
	// Action follows "refusing to": "delete database mydb".
	Action string
	// Effect, when set, is said in parentheses after "without confirmation".
	Effect string
	// Hint says how to go ahead anyway: "add --yes to delete it".
	Hint string
	// Declined is the error when the answer is not yes: "not deleted: no confirmation".
	Declined string
}

// AssumeYes tells whether a command goes ahead without asking: its --yes flag, or yes in the
// configuration.
func AssumeYes(f *Factory, flag bool) bool {
	return flag || (f.Config != nil && f.Config.Yes)
}

// Refuse returns nil when yes is set or the user can be asked; otherwise a usage error (exit 2),
// "refusing to ACTION without confirmation (EFFECT): WHY", WHY being that CI is set or which of
// stdin and stderr is not a terminal to ask on.
func (c Confirmation) Refuse(ios *output.IOStreams, yes bool) error {
	if yes || ios.CanPrompt() {
		return nil
	}
	why := "stdin is not a terminal"
	switch {
	case ios.CI():
		why = "CI is set"
	case ios.InTTY:
		why = "stderr is not a terminal, so the question would not be seen"
	}
	effect := ""
	if c.Effect != "" {
		effect = " (" + c.Effect + ")"
	}
	return UsageErrorf("refusing to %s without confirmation%s: %s", c.Action, effect, why).WithHint("%s", c.Hint)
}

// Ask asks question unless yes is set. Anything but a yes (a no, an empty line, or the input
// ending before an answer, the default being no) is the Declined error, exit code 1.
func (c Confirmation) Ask(ios *output.IOStreams, yes bool, question string) error {
	if yes {
		return nil
	}
	ok, err := ios.Confirm(question)
	if err != nil && !errors.Is(err, output.ErrNoAnswer) {
		return err
	}
	if !ok {
		return Errorf(ExitError, "%s", c.Declined)
	}
	return nil
}
