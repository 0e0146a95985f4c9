-- +goose Up
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);

-- +goose Down
DROP TABLE users;
