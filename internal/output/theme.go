package output

import (
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
)

// Theme styles text for a terminal. With colour off every style renders its input unchanged.
type Theme struct {
	Success lipgloss.Style
	Warning lipgloss.Style
	Error   lipgloss.Style
	Bold    lipgloss.Style
	Muted   lipgloss.Style
}

// Theme returns the theme for these streams.
func (s *IOStreams) Theme() Theme {
	r := lipgloss.NewRenderer(s.Out)
	if s.ColorEnabled() {
		r.SetColorProfile(termenv.ANSI)
	} else {
		r.SetColorProfile(termenv.Ascii)
	}
	return Theme{
		Success: r.NewStyle().Foreground(lipgloss.Color("2")),
		Warning: r.NewStyle().Foreground(lipgloss.Color("3")),
		Error:   r.NewStyle().Foreground(lipgloss.Color("1")),
		Bold:    r.NewStyle().Bold(true),
		Muted:   r.NewStyle().Foreground(lipgloss.Color("8")),
	}
}
