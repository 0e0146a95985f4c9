package upgrade

// SetAfterStep makes the upgrade commands built from now on in this (test) process call f after
// each step of an upgrade.
func SetAfterStep(f func(step string)) { afterStep = f }
