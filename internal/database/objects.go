package database

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
)

// Label keys and annotation keys on every object of a database.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelDatabase  = "stackblaze.io/database"

	AnnotationVersion = "stackblaze.io/version"
	AnnotationPlan    = "stackblaze.io/plan"
	AnnotationStorage = "stackblaze.io/storage"

	// Paths inside the container.
	DataMountPath = "/var/lib/postgresql/data"
	PGDATA        = DataMountPath + "/pgdata"
	// BackupMountPath is the backup volume: the pgBackRest repository and its lock files.
	BackupMountPath = "/var/lib/postgresql/backup"
	InitMountPath   = "/docker-entrypoint-initdb.d"
	InitScript      = "10-app-role.sh"

	// PostgresUID is the postgres user of the official image.
	PostgresUID = 999
	// TerminationGracePeriod gives PostgreSQL's fast shutdown time to finish, so that the next pod
	// finds a consistent data directory.
	TerminationGracePeriod = 60
)

// Labels are the labels of every object of database name.
func Labels(name string) map[string]string {
	return map[string]string{
		LabelName:      "postgresql",
		LabelInstance:  name,
		LabelManagedBy: "stackblaze",
		LabelDatabase:  name,
	}
}

// SelectorLabels select a database's pod. They never change, as a StatefulSet's selector is immutable.
func SelectorLabels(name string) map[string]string {
	return map[string]string{LabelName: "postgresql", LabelInstance: name}
}

// ManagedSelector selects every object stackblaze manages; with a name, those of one database.
func ManagedSelector(name string) string {
	s := LabelManagedBy + "=stackblaze," + LabelName + "=postgresql"
	if name != "" {
		s += "," + LabelDatabase + "=" + name
	}
	return s
}

// Credentials are a database's passwords. They only ever live in Secrets.
type Credentials struct {
	Username string
	Password string
	Database string
	// SuperuserPassword is the postgres role's password.
	SuperuserPassword string
	// Verifier is Password's SCRAM-SHA-256 verifier: the image's first start gives it to the
	// application's role, so that the password itself never reaches the server.
	Verifier string
}

// AppVerifierKey is the key of the superuser Secret that holds the application password's SCRAM
// verifier (Credentials.Verifier).
const AppVerifierKey = "app-verifier"

// PasswordBytes is the number of random bytes in a password: 256 bits, above the 190 DESIGN.md asks.
const PasswordBytes = 32

// NewPassword returns PasswordBytes random bytes from crypto/rand, base64url encoded (43
// characters that need no escaping in a URL).
func NewPassword() (string, error) {
	b := make([]byte, PasswordBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// DatabaseURL is the connection string applications get.
func DatabaseURL(c Credentials, host string, port int) string {
	u := url.URL{
		Scheme: "postgresql",
		User:   url.UserPassword(c.Username, c.Password),
		Host:   host + ":" + strconv.Itoa(port),
		Path:   "/" + c.Database,
	}
	return u.String()
}

// Objects are the apply configurations of one database, in the order they are applied (the
// StatefulSet last, so that its pod finds the Secrets and the ConfigMap).
type Objects struct {
	SuperuserSecret   *corev1ac.SecretApplyConfiguration
	CredentialsSecret *corev1ac.SecretApplyConfiguration
	InitConfigMap     *corev1ac.ConfigMapApplyConfiguration
	HeadlessService   *corev1ac.ServiceApplyConfiguration
	Service           *corev1ac.ServiceApplyConfiguration
	NetworkPolicy     *networkingv1ac.NetworkPolicyApplyConfiguration
	StatefulSet       *appsv1ac.StatefulSetApplyConfiguration
}

// InitScriptContent creates the application's login roles and its database on the first start.
// The official image (and the test bed) run *.sh files from /docker-entrypoint-initdb.d once, when
// the data directory is new. The owner role RoleName(name) owns the database; AltRoleName(name) is
// the second login role that rotate-credentials switches to: a member of the owner whose sessions
// start as the owner, so that objects created through either login have the same owner. The role
// the Secret names gets the password as its SCRAM-SHA-256 verifier (from the superuser Secret),
// which reaches psql through the environment (\getenv), never through argv, where any user on
// the node could read it: neither the server, nor its statement log, nor pg_stat_statements ever
// see the password. The role names are plain identifiers ([a-z0-9_]) and safe there. The
// postgres database gets pg_stat_statements (the server loads it; its view shows the statements of
// every database), which db insights reads: not the application's database, whose dumps would
// then carry an extension its role does not own.
func InitScriptContent(name string) string {
	return `#!/bin/bash
# Written by stackblaze: creates the application's login roles and its database on first init.
set -e
case "${APP_PASSWORD_VERIFIER:-}" in
  'SCRAM-SHA-256$'*) ;;
  *) echo "APP_PASSWORD_VERIFIER is not a SCRAM-SHA-256 verifier: refusing to set a password" >&2; exit 1 ;;
esac
psql -v ON_ERROR_STOP=1 -v owner=` + RoleName(name) + ` -v alt=` + AltRoleName(name) + ` --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'EOSQL'
\getenv app_user APP_USER
\getenv app_verifier APP_PASSWORD_VERIFIER
\getenv app_database APP_DATABASE
CREATE ROLE :"owner" LOGIN;
CREATE ROLE :"alt" LOGIN IN ROLE :"owner";
ALTER ROLE :"alt" SET role = :'owner';
ALTER ROLE :"app_user" PASSWORD :'app_verifier';
CREATE DATABASE :"app_database" OWNER :"owner";
REVOKE ALL ON DATABASE :"app_database" FROM PUBLIC;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
EOSQL
`
}

// BuildObjects builds the objects of a database. replicas is the StatefulSet's replica count (1
// for a new database; the current count for one that exists, so that create never restarts a
// database that was scaled to 0).
func BuildObjects(s Spec, c Credentials, replicas int32) Objects {
	name, ns := s.Name, s.Namespace
	labels := Labels(name)
	host := s.Host()

	superuser := corev1ac.Secret(SuperuserSecretName(name), ns).
		WithLabels(labels).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{"password": []byte(c.SuperuserPassword), AppVerifierKey: []byte(c.Verifier)})

	creds := corev1ac.Secret(CredentialsSecretName(name), ns).
		WithLabels(labels).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{
			"username":     []byte(c.Username),
			"password":     []byte(c.Password),
			"database":     []byte(c.Database),
			"host":         []byte(host),
			"port":         []byte(strconv.Itoa(Port)),
			"DATABASE_URL": []byte(DatabaseURL(c, host, Port)),
		})

	init := corev1ac.ConfigMap(InitConfigMapName(name), ns).
		WithLabels(labels).
		WithData(map[string]string{InitScript: InitScriptContent(name)})

	port := corev1ac.ServicePort().WithName("postgresql").WithPort(Port).
		WithTargetPort(intstr.FromString("postgresql")).WithProtocol(corev1.ProtocolTCP)

	headless := corev1ac.Service(HeadlessServiceName(name), ns).
		WithLabels(labels).
		WithSpec(corev1ac.ServiceSpec().
			WithClusterIP(corev1.ClusterIPNone).
			WithPublishNotReadyAddresses(true).
			WithSelector(SelectorLabels(name)).
			WithPorts(port))

	svc := corev1ac.Service(name, ns).
		WithLabels(labels).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(SelectorLabels(name)).
			WithPorts(corev1ac.ServicePort().WithName("postgresql").WithPort(Port).
				WithTargetPort(intstr.FromString("postgresql")).WithProtocol(corev1.ProtocolTCP)))

	np := networkingv1ac.NetworkPolicy(name, ns).
		WithLabels(labels).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(name))).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				// An empty podSelector with no namespaceSelector means: every pod of this namespace.
				WithFrom(networkingv1ac.NetworkPolicyPeer().WithPodSelector(metav1ac.LabelSelector())).
				WithPorts(networkingv1ac.NetworkPolicyPort().
					WithProtocol(corev1.ProtocolTCP).
					WithPort(intstr.FromInt32(Port)))))

	sts := appsv1ac.StatefulSet(name, ns).
		WithLabels(labels).
		WithAnnotations(map[string]string{
			AnnotationVersion: strconv.Itoa(s.Version),
			AnnotationPlan:    s.Plan.Name,
			AnnotationStorage: s.Storage.String(),
		}).
		WithSpec(appsv1ac.StatefulSetSpec().
			WithReplicas(replicas).
			WithServiceName(HeadlessServiceName(name)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(name))).
			WithPodManagementPolicy(appsv1.OrderedReadyPodManagement).
			WithPersistentVolumeClaimRetentionPolicy(appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicy().
				WithWhenDeleted(appsv1.RetainPersistentVolumeClaimRetentionPolicyType).
				WithWhenScaled(appsv1.RetainPersistentVolumeClaimRetentionPolicyType)).
			WithTemplate(podTemplate(s)).
			WithVolumeClaimTemplates(claimTemplates(s)...))

	return Objects{
		SuperuserSecret:   superuser,
		CredentialsSecret: creds,
		InitConfigMap:     init,
		HeadlessService:   headless,
		Service:           svc,
		NetworkPolicy:     np,
		StatefulSet:       sts,
	}
}

// claimTemplates are the data volume and, unless the backups go to S3, the backup volume.
func claimTemplates(s Spec) []*corev1ac.PersistentVolumeClaimApplyConfiguration {
	t := []*corev1ac.PersistentVolumeClaimApplyConfiguration{volumeClaimTemplate(s, "data", s.Storage)}
	if s.S3 == nil {
		t = append(t, volumeClaimTemplate(s, "backup", BackupStorage(s.Storage)))
	}
	return t
}

func volumeClaimTemplate(s Spec, name string, size resource.Quantity) *corev1ac.PersistentVolumeClaimApplyConfiguration {
	pvc := &corev1ac.PersistentVolumeClaimApplyConfiguration{}
	// No storageClassName: the cluster's default StorageClass.
	pvc.WithName(name).
		WithLabels(Labels(s.Name)).
		WithSpec(corev1ac.PersistentVolumeClaimSpec().
			WithAccessModes(corev1.ReadWriteOnce).
			WithResources(corev1ac.VolumeResourceRequirements().
				WithRequests(corev1.ResourceList{corev1.ResourceStorage: size})))
	return pvc
}

// BackupStorage is the size of a database's backup volume: twice its data volume, room for a
// week of compressed full backups and the WAL between them on a typical database (see
// docs/backups.md; an S3 repository has no such limit).
func BackupStorage(data resource.Quantity) resource.Quantity {
	q := data.DeepCopy()
	q.Add(data)
	return q
}

func podTemplate(s Spec) *corev1ac.PodTemplateSpecApplyConfiguration {
	name := s.Name
	p := s.Plan
	secretEnv := func(env, secret, key string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(env).WithValueFrom(corev1ac.EnvVarSource().
			WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(secret).WithKey(key)))
	}
	isReady := corev1ac.ExecAction().WithCommand("pg_isready", "--host=127.0.0.1", "--port=5432", "--username=postgres", "--dbname=postgres")
	shm := resource.MustParse(p.SharedMemory)
	mounts := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName("data").WithMountPath(DataMountPath),
		corev1ac.VolumeMount().WithName("init").WithMountPath(InitMountPath).WithReadOnly(true),
		corev1ac.VolumeMount().WithName("shm").WithMountPath("/dev/shm"),
	}
	volumes := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName("init").WithConfigMap(corev1ac.ConfigMapVolumeSource().
			WithName(InitConfigMapName(name))),
		corev1ac.Volume().WithName("shm").WithEmptyDir(corev1ac.EmptyDirVolumeSource().
			WithMedium(corev1.StorageMediumMemory).WithSizeLimit(shm)),
	}
	switch {
	case s.S3 == nil:
		mounts = append(mounts, corev1ac.VolumeMount().WithName("backup").WithMountPath(BackupMountPath))
	case s.S3.CAConfigMap != "":
		mounts = append(mounts, corev1ac.VolumeMount().WithName("s3-ca").WithMountPath(S3CAMountPath).WithReadOnly(true))
		volumes = append(volumes, corev1ac.Volume().WithName("s3-ca").WithConfigMap(corev1ac.ConfigMapVolumeSource().
			WithName(s.S3.CAConfigMap)))
	}

	container := corev1ac.Container().
		WithName(ContainerName).
		WithImage(s.Image()).
		WithImagePullPolicy(corev1.PullIfNotPresent).
		// The image's entrypoint passes "-c name=value" on to postgres: the server's settings and
		// WAL archiving into the pgBackRest repository (internal/backup).
		WithArgs(ServerArgs(s)...).
		WithPorts(corev1ac.ContainerPort().WithName("postgresql").WithContainerPort(Port).WithProtocol(corev1.ProtocolTCP)).
		WithEnv(append([]*corev1ac.EnvVarApplyConfiguration{
			corev1ac.EnvVar().WithName("PGDATA").WithValue(PGDATA),
			corev1ac.EnvVar().WithName("POSTGRES_USER").WithValue("postgres"),
			secretEnv("POSTGRES_PASSWORD", SuperuserSecretName(name), "password"),
			corev1ac.EnvVar().WithName("POSTGRES_DB").WithValue("postgres"),
			secretEnv("APP_USER", CredentialsSecretName(name), "username"),
			secretEnv("APP_PASSWORD_VERIFIER", SuperuserSecretName(name), AppVerifierKey),
			secretEnv("APP_DATABASE", CredentialsSecretName(name), "database"),
		}, backupEnv(s)...)...).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(p.CPURequest),
				corev1.ResourceMemory: resource.MustParse(p.MemoryRequest),
			}).
			WithLimits(corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(p.CPULimit),
				corev1.ResourceMemory: resource.MustParse(p.MemoryLimit),
			})).
		WithVolumeMounts(mounts...).
		WithStartupProbe(corev1ac.Probe().WithExec(isReady).
			// up to 10 minutes of crash recovery before the liveness probe takes over
			WithPeriodSeconds(5).WithFailureThreshold(120).WithTimeoutSeconds(5)).
		WithReadinessProbe(corev1ac.Probe().WithExec(isReady).
			WithPeriodSeconds(5).WithFailureThreshold(3).WithTimeoutSeconds(5)).
		WithLivenessProbe(corev1ac.Probe().WithExec(isReady).
			WithPeriodSeconds(10).WithFailureThreshold(6).WithTimeoutSeconds(5)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(PostgresUID).
			WithRunAsGroup(PostgresUID).
			WithAllowPrivilegeEscalation(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))

	return corev1ac.PodTemplateSpec().
		WithLabels(Labels(name)).
		WithSpec(corev1ac.PodSpec().
			WithTerminationGracePeriodSeconds(TerminationGracePeriod).
			WithAutomountServiceAccountToken(false).
			WithEnableServiceLinks(false).
			WithSecurityContext(corev1ac.PodSecurityContext().
				WithRunAsNonRoot(true).
				WithRunAsUser(PostgresUID).
				WithRunAsGroup(PostgresUID).
				WithFSGroup(PostgresUID).
				WithFSGroupChangePolicy(corev1.FSGroupChangeOnRootMismatch).
				WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
			WithContainers(container).
			WithVolumes(volumes...))
}

type (
	secretAC  = corev1ac.SecretApplyConfiguration
	serviceAC = corev1ac.ServiceApplyConfiguration
)
