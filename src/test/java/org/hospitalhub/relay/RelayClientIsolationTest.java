package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;

/**
 * The client SDK (org.hospitalhub.relay.client) ships to hospitals' own programs: it may use the JDK and Jackson,
 * nothing of Camel, Quarkus, Vert.x or the rest of the hub. Checked on its sources (imports and fully qualified
 * names), so a new dependency fails the build here.
 */
class RelayClientIsolationTest {

    static final Path SDK = Path.of("src/main/java/org/hospitalhub/relay/client");
    static final Pattern IMPORT = Pattern.compile("^import\\s+(static\\s+)?([\\w.]+)(\\.\\*)?\\s*;", Pattern.MULTILINE);
    static final List<String> ALLOWED = List.of("java.", "com.fasterxml.jackson.", "org.hospitalhub.relay.client.");
    static final Pattern FORBIDDEN_NAME = Pattern.compile(
            "\\b(org\\.apache\\.camel|io\\.quarkus|io\\.vertx|io\\.netty|jakarta\\.|javax\\.|org\\.jboss|io\\.micrometer"
                    + "|org\\.hospitalhub\\.(?!relay\\.client\\b)\\w+)");

    @Test
    void theClientSdkImportsOnlyTheJdkJacksonAndItself() throws IOException {
        List<Path> sources;
        try (Stream<Path> files = Files.list(SDK)) {
            sources = files.filter(p -> p.toString().endsWith(".java")).sorted().toList();
        }
        assertTrue(sources.size() >= 5, "the SDK's sources are where this test looks: " + sources);
        List<String> problems = new ArrayList<>();
        for (Path p : sources) {
            String text = Files.readString(p);
            Matcher m = IMPORT.matcher(text);
            while (m.find()) {
                String name = m.group(2);
                if (ALLOWED.stream().noneMatch(name::startsWith)) {
                    problems.add(p.getFileName() + ": import " + name);
                }
            }
            Matcher f = FORBIDDEN_NAME.matcher(text.replaceAll("(?m)^package .*$", ""));
            while (f.find()) {
                problems.add(p.getFileName() + ": refers to " + f.group());
            }
            assertTrue(text.startsWith("package org.hospitalhub.relay.client;"), p + " is a source of the SDK package");
        }
        assertEquals(List.of(), problems, "the client SDK must not depend on Camel, Quarkus, Vert.x or other hub packages");
    }

    @Test
    void theCheckCatchesAForbiddenImport() {
        Matcher m = IMPORT.matcher("package x;\nimport org.apache.camel.Exchange;\nimport java.util.List;\n");
        List<String> found = new ArrayList<>();
        while (m.find()) {
            found.add(m.group(2));
        }
        assertEquals(List.of("org.apache.camel.Exchange", "java.util.List"), found);
        assertTrue(FORBIDDEN_NAME.matcher("new org.hospitalhub.delivery.Database()").find());
        assertTrue(!FORBIDDEN_NAME.matcher("org.hospitalhub.relay.client.Packet").find());
    }
}
