package k8s_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
)

// TestREADMEDeploySection checks the README's two commands for kind against the
// repository: the archive they load is the one `make image` writes, under the name the
// dev overlay runs, and the overlay they apply exists and renders.
func TestREADMEDeploySection(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "\n## Deploy\n")
	require.True(t, ok, "README has a Deploy section")
	section, _, _ = strings.Cut(section, "\n## ")
	block := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(section)
	require.NotNil(t, block)
	lines := strings.Split(strings.TrimSpace(block[1]), "\n")
	require.Len(t, lines, 2, "two commands")
	assert.Contains(t, section, "docs/operations.md")
	assert.Contains(t, section, "overlays/production")

	archive := regexp.MustCompile(`kind load image-archive (\S+)`).FindStringSubmatch(lines[0])
	require.NotNil(t, archive)
	assert.Contains(t, lines[0], "make image")
	makefile, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	assert.Contains(t, string(makefile), "--out $(BIN)/"+strings.TrimPrefix(archive[1], "bin/"))
	tag := regexp.MustCompile(`(?m)^IMAGE_TAG \?= (\S+)$`).FindStringSubmatch(string(makefile))
	require.NotNil(t, tag)

	apply := regexp.MustCompile(`^kubectl apply -k deploy/k8s/(\S+)$`).FindStringSubmatch(lines[1])
	require.NotNil(t, apply)
	r := render(t, apply[1])
	d := find[appsv1.Deployment](t, r, "tokenizer")
	assert.Equal(t, tag[1], d.Spec.Template.Spec.Containers[0].Image, "the dev overlay runs the image make image tags")
}
