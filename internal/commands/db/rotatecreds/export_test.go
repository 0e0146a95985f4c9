package rotatecreds

// SetAfterStep makes the rotate-credentials commands built from now on in this (test) process call
// f after each step of a rotation.
func SetAfterStep(f func(step string)) { afterStep = f }
