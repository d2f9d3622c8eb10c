package org.hospitalhub.relay;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Optional;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.jboss.logging.Logger;

/**
 * The node's file store (files do not travel inside packets; packets carry {@code sha256} references). Filesystem:
 * {@code <dir>/<sha256>} once complete and verified, {@code <sha256>.part} while an upload is under way (resumable:
 * the uploader asks for the offset and continues there), {@code <sha256>.up} once the parent has it. Complete files
 * are replicated up to the parent (over HTTP, at the parent's {@code url}), so the top has every file; a download of a
 * file this node lacks is fetched from the parent (which fetches from its own parent if needed), verified, kept.
 */
final class FileStore {

    private static final Logger LOG = Logger.getLogger(FileStore.class);
    static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
    static final int CHUNK = 512 * 1024;

    private final Path dir;
    private final Optional<URI> parentUrl;
    private final String parentToken;
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();
    private final Duration timeout;

    FileStore(Path dir, Optional<URI> parentUrl, String parentToken, Duration timeout) {
        this.dir = dir;
        this.parentUrl = parentUrl.map(u -> URI.create(u.toString().endsWith("/") ? u.toString() : u + "/"));
        this.parentToken = parentToken;
        this.timeout = timeout;
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new IllegalStateException("cannot create the relay file store " + dir + ": " + e.getMessage(), e);
        }
    }

    /** The result of writing one chunk. */
    record Chunk(long offset, boolean complete) {
    }

    static class FileRefusal extends Refusal {
        final long offset;

        FileRefusal(int status, String message, String field, String rule, long offset) {
            super(status, message, field, rule, null);
            this.offset = offset;
        }
    }

    Path complete(String sha) {
        return dir.resolve(sha);
    }

    long offset(String sha) throws IOException {
        if (Files.exists(complete(sha))) {
            return Files.size(complete(sha));
        }
        Path part = dir.resolve(sha + ".part");
        return Files.exists(part) ? Files.size(part) : 0;
    }

    /** Appends a chunk at {@code offset} (which must be what the store has); verifies the checksum at the end. */
    synchronized Chunk write(String sha, long size, long offset, byte[] bytes) throws IOException {
        if (Files.exists(complete(sha))) {
            return new Chunk(Files.size(complete(sha)), true);
        }
        Path part = dir.resolve(sha + ".part");
        long have = Files.exists(part) ? Files.size(part) : 0;
        if (offset != have) {
            throw new FileRefusal(409, "the upload of " + sha + " continues at offset " + have, "offset", "resume-at", have);
        }
        if (have + bytes.length > size) {
            throw new FileRefusal(400, "more bytes than the declared size " + size, "size", "max", have);
        }
        try (OutputStream out = Files.newOutputStream(part, StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
            out.write(bytes);
        }
        long now = have + bytes.length;
        if (now < size) {
            return new Chunk(now, false);
        }
        String actual = sha256(part);
        if (!actual.equals(sha)) {
            Files.delete(part);
            throw new FileRefusal(422, "checksum mismatch: the bytes have sha256 " + actual + ", not " + sha
                    + "; the upload was discarded", "sha256", "checksum", 0);
        }
        Files.move(part, complete(sha), StandardCopyOption.ATOMIC_MOVE);
        LOG.infof("Relay file %s (%d bytes) complete", sha, size);
        return new Chunk(size, true);
    }

    /** The file, fetched from the parent first if this node does not have it. */
    Optional<Path> find(String sha) throws IOException {
        Path p = complete(sha);
        if (Files.exists(p)) {
            return Optional.of(p);
        }
        if (parentUrl.isEmpty()) {
            return Optional.empty();
        }
        HttpResponse<InputStream> res;
        try {
            res = http.send(HttpRequest.newBuilder(parentUrl.get().resolve("relay/v1/files/" + sha)).timeout(timeout.multipliedBy(4))
                    .header("Authorization", "Bearer " + parentToken).GET().build(), HttpResponse.BodyHandlers.ofInputStream());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        if (res.statusCode() == 404) {
            res.body().close();
            return Optional.empty();
        }
        if (res.statusCode() != 200) {
            res.body().close();
            throw new IOException("parent answered " + res.statusCode() + " for file " + sha);
        }
        Path tmp = Files.createTempFile(dir, sha, ".fetch");
        try (InputStream in = res.body()) {
            Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            if (!sha256(tmp).equals(sha)) {
                throw new IOException("file " + sha + " from the parent does not match its checksum");
            }
            Files.move(tmp, p, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            Files.writeString(dir.resolve(sha + ".up"), ""); // the parent has it
        } finally {
            Files.deleteIfExists(tmp);
        }
        return Optional.of(p);
    }

    /** Pushes complete files the parent does not have yet (resumable, like any client). Returns how many. */
    int replicateUp() {
        if (parentUrl.isEmpty()) {
            return 0;
        }
        int n = 0;
        try (Stream<Path> files = Files.list(dir)) {
            for (Path p : files.filter(f -> SHA256.matcher(f.getFileName().toString()).matches()).toList()) {
                String sha = p.getFileName().toString();
                if (Files.exists(dir.resolve(sha + ".up"))) {
                    continue;
                }
                upload(p, sha);
                Files.writeString(dir.resolve(sha + ".up"), "");
                n++;
            }
        } catch (IOException e) {
            LOG.debugf("replicating files to the parent failed (tried again): %s", e.toString());
        }
        return n;
    }

    private void upload(Path file, String sha) throws IOException {
        long size = Files.size(file);
        URI uri = parentUrl.get().resolve("relay/v1/files/" + sha);
        long offset = remoteOffset(uri);
        byte[] buf = new byte[CHUNK];
        try (var ch = Files.newByteChannel(file)) {
            while (offset < size) {
                ch.position(offset);
                int len = ch.read(java.nio.ByteBuffer.wrap(buf));
                byte[] chunk = java.util.Arrays.copyOf(buf, len);
                HttpResponse<String> r = send(HttpRequest.newBuilder(URI.create(uri + "?size=" + size + "&offset=" + offset))
                        .timeout(timeout.multipliedBy(2)).header("Authorization", "Bearer " + parentToken)
                        .PUT(HttpRequest.BodyPublishers.ofByteArray(chunk)).build());
                if (r.statusCode() == 409) {
                    offset = remoteOffset(uri);
                    continue;
                }
                if (r.statusCode() != 200 && r.statusCode() != 201) {
                    throw new IOException("parent refused file " + sha + ": " + r.statusCode() + " " + r.body());
                }
                offset += len;
            }
        }
    }

    private long remoteOffset(URI uri) throws IOException {
        HttpResponse<String> r = send(HttpRequest.newBuilder(URI.create(uri + "/offset")).timeout(timeout)
                .header("Authorization", "Bearer " + parentToken).GET().build());
        if (r.statusCode() != 200) {
            throw new IOException("parent answered " + r.statusCode() + " for the offset of " + uri);
        }
        return HttpEndpoint.JSON.readTree(r.body()).path("offset").asLong();
    }

    private HttpResponse<String> send(HttpRequest req) throws IOException {
        try {
            return http.send(req, HttpResponse.BodyHandlers.ofString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    static String sha256(Path p) throws IOException {
        try (InputStream in = new DigestInputStream(Files.newInputStream(p), MessageDigest.getInstance("SHA-256"))) {
            in.transferTo(OutputStream.nullOutputStream());
            return HexFormat.of().formatHex(((DigestInputStream) in).getMessageDigest().digest());
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
