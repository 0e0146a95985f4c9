// Package podrunner stands in for the kubelet's container runtime on the test bed, for database
// pods only. KWOK simulates nodes and pod status; it runs no containers. For every pod bound to a
// node whose container runs a PostgreSQL image, the runner starts a real PostgreSQL server on a
// free loopback port, with its data directory on the host path of the pod's PersistentVolume, and
// tells KWOK how to reach it: a PortForward (pod port 5432 to that server), an Exec (commands run
// locally with PGHOST, PGPORT and PGDATA pointing at it) and a Logs object (the server's log). It
// then annotates the pod, and the test bed's pod-ready Stage marks the pod Ready only once that
// annotation is there, so a database pod is Ready exactly when its server accepts connections.
//
// A new data directory is initialised the way the official postgres image's entrypoint does it:
// initdb from POSTGRES_USER and POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), POSTGRES_DB
// created, then the scripts mounted at /docker-entrypoint-initdb.d run once. TCP logins need a
// password (scram-sha-256); the per-pod Unix socket trusts local users, as inside the container.
package podrunner
