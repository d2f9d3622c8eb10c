package org.hospitalhub.ops;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.Reader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.stream.Stream;

import org.hospitalhub.relay.Topology;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;

/**
 * The Kustomize overlays under k8s/ hold together without a cluster (no kubectl here): every file they name exists,
 * every JSON patch points at a place the base resource has, and the relay overlay mounts its topology and tokens
 * where its application.properties says they are, with a topology the relay accepts.
 */
class K8sManifestsTest {

    static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());
    static final Path K8S = Path.of("k8s");

    @Test
    void everyOverlayNamesFilesThatExistAndPatchesPlacesTheBaseHas() throws IOException {
        List<Path> overlays;
        try (Stream<Path> s = Files.list(K8S.resolve("overlays"))) {
            overlays = s.filter(Files::isDirectory).sorted().toList();
        }
        assertTrue(overlays.size() >= 3, "overlays found: " + overlays);
        for (Path overlay : overlays) {
            JsonNode k = YAML.readTree(overlay.resolve("kustomization.yaml").toFile());
            for (JsonNode r : k.path("resources")) {
                assertTrue(Files.exists(overlay.resolve(r.asText())), overlay + ": resource " + r.asText() + " does not exist");
            }
            for (JsonNode gen : k.path("configMapGenerator")) {
                for (JsonNode f : gen.path("files")) {
                    String file = f.asText().contains("=") ? f.asText().substring(f.asText().indexOf('=') + 1) : f.asText();
                    assertTrue(Files.isRegularFile(overlay.resolve(file)), overlay + ": " + gen.path("name").asText()
                            + " takes " + file + ", which does not exist");
                }
            }
            for (JsonNode p : k.path("patches")) {
                JsonNode target = base(p.path("target").path("kind").asText(), p.path("target").path("name").asText());
                for (JsonNode op : YAML.readTree(p.path("patch").asText())) {
                    String path = op.path("path").asText();
                    String where = overlay.getFileName() + ": " + op.path("op").asText() + " " + path + " in "
                            + p.path("target").path("kind").asText();
                    switch (op.path("op").asText()) {
                        case "add" -> {
                            JsonNode parent = target.at(path.substring(0, path.lastIndexOf('/')));
                            assertFalse(parent.isMissingNode(), where + ": the base has no " + path.substring(0, path.lastIndexOf('/')));
                            if (path.endsWith("/-")) {
                                assertTrue(parent.isArray(), where + ": appends to something that is not a list");
                            }
                        }
                        case "replace", "remove" -> assertFalse(target.at(path).isMissingNode(), where + ": the base has no " + path);
                        default -> throw new AssertionError(where + ": an operation this test does not know");
                    }
                }
            }
        }
    }

    @Test
    void theRelayOverlayMountsItsTopologyAndTokensWhereItsSettingsLookForThem() throws IOException {
        Path overlay = K8S.resolve("overlays/county-relay");
        JsonNode k = YAML.readTree(overlay.resolve("kustomization.yaml").toFile());
        Properties props = new Properties();
        try (Reader r = Files.newBufferedReader(Path.of("examples/county-relay/application.properties"))) {
            props.load(r);
        }
        List<JsonNode> added = new ArrayList<>();
        for (JsonNode p : k.path("patches")) {
            YAML.readTree(p.path("patch").asText()).forEach(added::add);
        }
        assertEquals(mountOf(added, "relay-topology") + "/" + generatedKey(k, "hospital-hub-relay-topology"),
                props.getProperty("hub.relay.topology-file"), "hub.relay.topology-file is where the topology is mounted");
        assertEquals(mountOf(added, "relay-tokens") + "/tokens", props.getProperty("hub.relay.tokens-file"),
                "hub.relay.tokens-file is where the Secret's key 'tokens' is mounted");
        assertEquals("s3", props.getProperty("hub.relay.file-store"), "replicas share their files through a bucket");
        assertTrue(added.stream().anyMatch(op -> op.path("path").asText().equals("/spec/ports/-")
                && op.path("value").path("port").asInt() == 7700), "the Service exposes the relay's TCP port");

        String image = Files.readAllLines(Path.of("Dockerfile.jvm")).stream().filter(l -> l.startsWith("ENV JAVA_OPTS_APPEND="))
                .map(l -> l.substring("ENV JAVA_OPTS_APPEND=".length()).replace("\"", "")).findFirst().orElseThrow();
        String opts = added.stream().filter(op -> "JAVA_OPTS_APPEND".equals(op.path("value").path("name").asText()))
                .map(op -> op.path("value").path("value").asText()).findFirst().orElseThrow();
        assertTrue(opts.startsWith(image + " "), "JAVA_OPTS_APPEND keeps the image's own options (" + image + "): " + opts);

        Topology t = Topology.load(Path.of("examples/county-relay/topology.yaml"));
        assertEquals("county-1", t.node());
        assertTrue(t.parent().isPresent(), "a county node has a parent");
        assertEquals(7700, t.parent().get().port(), "the parent's relay TCP port, as the city's Service exposes it");
        assertTrue(t.consultation().isPresent());
    }

    /** A base resource by kind and name. */
    static JsonNode base(String kind, String name) throws IOException {
        try (Stream<Path> s = Files.list(K8S.resolve("base"))) {
            for (Path f : s.filter(p -> p.toString().endsWith(".yaml") && !p.endsWith("kustomization.yaml")).toList()) {
                JsonNode doc = YAML.readTree(f.toFile());
                if (kind.equals(doc.path("kind").asText()) && name.equals(doc.path("metadata").path("name").asText())) {
                    return doc;
                }
            }
        }
        throw new AssertionError("k8s/base has no " + kind + " named " + name);
    }

    private static String mountOf(List<JsonNode> ops, String volume) {
        return ops.stream().filter(op -> op.path("path").asText().endsWith("/volumeMounts/-")
                && volume.equals(op.path("value").path("name").asText())).map(op -> op.path("value").path("mountPath").asText())
                .findFirst().orElseThrow(() -> new AssertionError("no volume mount of " + volume));
    }

    private static String generatedKey(JsonNode k, String configMap) {
        for (JsonNode gen : k.path("configMapGenerator")) {
            if (configMap.equals(gen.path("name").asText())) {
                String f = gen.path("files").get(0).asText();
                return f.substring(0, f.indexOf('='));
            }
        }
        throw new AssertionError("no ConfigMap " + configMap + " generated");
    }
}
