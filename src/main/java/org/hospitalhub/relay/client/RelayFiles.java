package org.hospitalhub.relay.client;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * Files (images, reports) for packets: uploaded to the client's own relay node in chunks, resumable (after a broken
 * link the upload continues where the node has it), checked by sha256 at the end; a packet then carries the
 * {@link FileRef}. The receiver downloads from its own node, which fetches through the tree when it lacks the file,
 * and the download is checked against the checksum too. Over HTTP, whichever transport the packets use.
 */
public final class RelayFiles {

    /** What a packet carries about a file: put {@link #toJson()} in its parameters. */
    public record FileRef(String sha256, long size, String name) {
        public ObjectNode toJson() {
            return new ObjectMapper().createObjectNode().put("sha256", sha256).put("size", size).put("name", name);
        }

        public static FileRef fromJson(JsonNode n) {
            return new FileRef(n.path("sha256").asText(), n.path("size").asLong(), n.path("name").asText(null));
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper();
    private final URI base;
    private final String token;
    private final int chunkSize;
    private final Duration timeout;
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    /** {@code base}: the node's HTTP address; {@code token}: the client's relay token. */
    public RelayFiles(URI base, String token) {
        this(base, token, 512 * 1024, Duration.ofSeconds(30));
    }

    public RelayFiles(URI base, String token, int chunkSize, Duration timeout) {
        String b = base.toString();
        this.base = URI.create(b.endsWith("/") ? b : b + "/");
        this.token = token;
        this.chunkSize = chunkSize;
        this.timeout = timeout;
    }

    /**
     * Uploads (or finishes uploading) a file; returns its reference once the node has it complete and verified.
     * Throws IOException when the link fails: calling again resumes at the node's offset.
     */
    public FileRef upload(Path file) throws IOException {
        String sha = sha256(file);
        long size = Files.size(file);
        URI uri = base.resolve("relay/v1/files/" + sha);
        long offset = offset(sha);
        byte[] buf = new byte[chunkSize];
        try (SeekableByteChannel ch = Files.newByteChannel(file)) {
            while (true) {
                ch.position(offset);
                int len = Math.max(0, ch.read(ByteBuffer.wrap(buf)));
                HttpResponse<String> r = send(HttpRequest.newBuilder(URI.create(uri + "?size=" + size + "&offset=" + offset))
                        .timeout(timeout).header("Authorization", "Bearer " + token)
                        .PUT(HttpRequest.BodyPublishers.ofByteArray(Arrays.copyOf(buf, len))).build());
                JsonNode body = JSON.readTree(r.body().isEmpty() ? "{}" : r.body());
                if (r.statusCode() == 409) {
                    offset = body.path("offset").asLong();
                    continue;
                }
                if (r.statusCode() != 200 && r.statusCode() != 201) {
                    throw new RelayRejectedException(r.statusCode(), body.path("error").asText("HTTP " + r.statusCode()),
                            body.path("field").asText(null), body.path("rule").asText(null));
                }
                if (body.path("complete").asBoolean()) {
                    return new FileRef(sha, size, file.getFileName().toString());
                }
                offset = body.path("offset").asLong();
            }
        }
    }

    /** Where an upload of this file would continue (its size when the node has it all). */
    public long offset(String sha256) throws IOException {
        HttpResponse<String> r = send(HttpRequest.newBuilder(base.resolve("relay/v1/files/" + sha256 + "/offset"))
                .timeout(timeout).header("Authorization", "Bearer " + token).GET().build());
        if (r.statusCode() != 200) {
            throw new IOException("relay answered " + r.statusCode() + ": " + r.body());
        }
        return JSON.readTree(r.body()).path("offset").asLong();
    }

    /** Downloads a referenced file to {@code target}, checked against its sha256. */
    public void download(FileRef ref, Path target) throws IOException {
        HttpResponse<InputStream> r;
        try {
            r = http.send(HttpRequest.newBuilder(base.resolve("relay/v1/files/" + ref.sha256())).timeout(timeout.multipliedBy(4))
                    .header("Authorization", "Bearer " + token).GET().build(), HttpResponse.BodyHandlers.ofInputStream());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        if (r.statusCode() != 200) {
            String msg = new String(r.body().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            throw new RelayRejectedException(r.statusCode(), msg, "sha256", null);
        }
        Path tmp = Files.createTempFile(target.toAbsolutePath().getParent(), "relay", ".part");
        try (InputStream in = r.body()) {
            Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            String actual = sha256(tmp);
            if (!actual.equals(ref.sha256())) {
                throw new IOException("downloaded bytes have sha256 " + actual + ", not " + ref.sha256());
            }
            Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    private HttpResponse<String> send(HttpRequest req) throws IOException {
        try {
            return http.send(req, HttpResponse.BodyHandlers.ofString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    public static String sha256(Path file) throws IOException {
        try (DigestInputStream in = new DigestInputStream(Files.newInputStream(file), MessageDigest.getInstance("SHA-256"))) {
            in.transferTo(OutputStream.nullOutputStream());
            return HexFormat.of().formatHex(in.getMessageDigest().digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
