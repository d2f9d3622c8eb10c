package org.hospitalhub.delivery;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.networknt.schema.JsonSchema;
import com.networknt.schema.JsonSchemaFactory;

/**
 * JSON Schemas of event payloads, one per event type: {@code schemas/<type>.json} on the classpath (listed in
 * {@code schemas/index.txt}) and, optionally, from the folder {@code hub.schemas.dir} (a hospital's own types, or
 * overrides). The type names the hub accepts are exactly the schemas it holds.
 */
@ApplicationScoped
public class SchemaRegistry {

    private static final Logger LOG = Logger.getLogger(SchemaRegistry.class);
    static final Pattern TYPE = Pattern.compile("[a-z][a-z0-9]*(\\.[a-z][a-z0-9_-]*){1,5}");

    private final Map<String, JsonSchema> schemas = new TreeMap<>();
    private final Map<String, JsonNode> rawSchemas = new TreeMap<>();
    private final Map<String, StreamedSchema> streamed = new java.util.HashMap<>();

    public SchemaRegistry(ObjectMapper mapper,
            @ConfigProperty(name = "hub.schemas.dir") Optional<String> externalDir) throws IOException {
        JsonSchemaFactory factory = NumericBounds.factory(); // 2020-12, numeric bounds checked quickly
        ClassLoader cl = Thread.currentThread().getContextClassLoader();
        try (InputStream index = cl.getResourceAsStream("schemas/index.txt")) {
            if (index == null) {
                throw new IllegalStateException("schemas/index.txt is missing from the classpath");
            }
            for (String line : new String(index.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).split("\\R")) {
                String type = line.strip();
                if (type.isEmpty() || type.startsWith("#")) {
                    continue;
                }
                try (InputStream in = cl.getResourceAsStream("schemas/" + type + ".json")) {
                    if (in == null) {
                        throw new IllegalStateException("schemas/index.txt lists " + type + " but schemas/" + type
                                + ".json is missing");
                    }
                    register(type, mapper.readTree(in), factory, "classpath:schemas/" + type + ".json");
                }
            }
        }
        if (externalDir.isPresent() && !externalDir.get().isBlank()) {
            Path dir = Path.of(externalDir.get());
            if (Files.isDirectory(dir)) {
                try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "*.json")) {
                    for (Path f : files) {
                        String name = f.getFileName().toString();
                        String type = name.substring(0, name.length() - ".json".length());
                        register(type, mapper.readTree(f.toFile()), factory, f.toString());
                    }
                }
            } else {
                LOG.warnf("hub.schemas.dir %s is not a folder; only the built-in schemas are used", dir);
            }
        }
        LOG.infof("Event types with a schema: %s", schemas.keySet());
        Set<String> libraryOnly = new java.util.TreeSet<>(schemas.keySet());
        libraryOnly.removeAll(streamed.keySet());
        if (!libraryOnly.isEmpty()) {
            LOG.infof("Event types whose schema uses keywords the parser does not check as it reads (their payloads are"
                    + " checked on a tree by the JSON Schema library): %s", libraryOnly);
        }
    }

    private void register(String type, JsonNode schema, JsonSchemaFactory factory, String origin) {
        if (!TYPE.matcher(type).matches()) {
            throw new IllegalStateException(origin + ": '" + type
                    + "' is not a valid event type name (lower-case words separated by dots, e.g. his.charge.created)");
        }
        try {
            schemas.put(type, factory.getSchema(schema));
            rawSchemas.put(type, schema);
            StreamedSchema quick = StreamedSchema.compile(schema);
            if (quick != null) {
                streamed.put(type, quick);
            } else {
                streamed.remove(type); // an override of a built-in schema
            }
        } catch (RuntimeException e) {
            throw new IllegalStateException(origin + ": invalid JSON Schema: " + e.getMessage(), e);
        }
    }

    public Optional<JsonSchema> schema(String type) {
        return Optional.ofNullable(schemas.get(type));
    }

    /**
     * The type's schema as the event parser checks it while reading a payload (certainly valid, or unsure: then the
     * library decides), or null when the schema uses keywords that check does not know.
     */
    StreamedSchema streamed(String type) {
        return streamed.get(type);
    }

    /** The schema document itself, for coercing XML text into the JSON types it asks for. */
    public Optional<JsonNode> rawSchema(String type) {
        return Optional.ofNullable(rawSchemas.get(type));
    }

    public Set<String> types() {
        return schemas.keySet();
    }
}
