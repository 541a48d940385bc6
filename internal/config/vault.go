package config

import (
	"errors"
	"time"
)

// VaultConfig says where HashiCorp Vault is and how to log in (keys.vault).
type VaultConfig struct {
	Address string `yaml:"address" usage:"Vault address, e.g. https://vault.internal:8200"`
	// AuthMethod is token, approle or kubernetes.
	AuthMethod string `yaml:"auth_method" usage:"token, approle or kubernetes"`
	Token      string `yaml:"token" sensitive:"true" usage:"Vault token (auth_method token)"`
	RoleID     string `yaml:"role_id" usage:"AppRole role ID"`
	// SecretIDFile holds the AppRole secret ID (preferred to SecretID in config).
	SecretID       string `yaml:"secret_id" sensitive:"true" usage:"AppRole secret ID"`
	SecretIDFile   string `yaml:"secret_id_file" usage:"file holding the AppRole secret ID"`
	KubernetesRole string `yaml:"kubernetes_role" usage:"Vault role for Kubernetes auth"`
	// KubernetesTokenFile is the service account token (default: the in-pod path).
	KubernetesTokenFile string        `yaml:"kubernetes_token_file" usage:"service account token file for Kubernetes auth"`
	AuthMount           string        `yaml:"auth_mount" usage:"mount path of the auth method (default: its name)"`
	TransitMount        string        `yaml:"transit_mount" usage:"mount path of the Transit engine"`
	KEKName             string        `yaml:"kek_name" usage:"Transit key that wraps data keys"`
	SigningKey          string        `yaml:"signing_key" usage:"Transit ed25519 key that signs audit checkpoints"`
	CACert              string        `yaml:"ca_cert" usage:"CA bundle for Vault's TLS certificate"`
	Timeout             time.Duration `yaml:"timeout" usage:"timeout of one Vault request"`
	MaxRetries          int           `yaml:"max_retries" usage:"retries of a failed Vault request, with backoff"`
}

// Defaults fills unset fields.
func (c *VaultConfig) Defaults() {
	if c.AuthMethod == "" {
		c.AuthMethod = "token"
	}
	if c.TransitMount == "" {
		c.TransitMount = "transit"
	}
	if c.KEKName == "" {
		c.KEKName = "tokenizer-kek"
	}
	if c.SigningKey == "" {
		c.SigningKey = "tokenizer-audit"
	}
	if c.KubernetesTokenFile == "" {
		c.KubernetesTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 2
	}
}

// Validate names the first wrong setting.
func (c *VaultConfig) Validate() error {
	if c.Address == "" {
		return errors.New("keys.vault.address: required with keys.provider=vault")
	}
	switch c.AuthMethod {
	case "token":
		if c.Token == "" {
			return errors.New("keys.vault.token: required with auth_method token")
		}
	case "approle":
		if c.RoleID == "" || (c.SecretID == "" && c.SecretIDFile == "") {
			return errors.New("keys.vault.role_id and secret_id (or secret_id_file): required with auth_method approle")
		}
	case "kubernetes":
		if c.KubernetesRole == "" {
			return errors.New("keys.vault.kubernetes_role: required with auth_method kubernetes")
		}
	default:
		return errors.New("keys.vault.auth_method: want token, approle or kubernetes")
	}
	if c.Timeout < 0 || c.MaxRetries < 0 {
		return errors.New("keys.vault.timeout and max_retries must not be negative")
	}
	return nil
}
