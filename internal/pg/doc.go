// Package pg talks to PostgreSQL with pgx: readiness checks, logins, role and password changes.
// It never imports cobra, viper or the output package.
package pg
