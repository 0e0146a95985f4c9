// Package output holds what every command needs to talk to a person or a program: the IOStreams
// with their terminal flags, the colour theme, progress reporting (a spinner and ✔ lines on a
// terminal, plain timestamped lines otherwise) and JSON and table rendering.
//
// Results go to Out, everything else (progress, warnings, prompts) to ErrOut.
package output
