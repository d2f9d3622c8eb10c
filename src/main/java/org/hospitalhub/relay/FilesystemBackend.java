package org.hospitalhub.relay;

import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.Channels;
import java.nio.channels.SeekableByteChannel;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;

/**
 * Complete files in the node's file folder: {@code <dir>/<sha256>}, and {@code <sha256>.up} once the parent has it
 * (written after the file, so a crash in between only sends it again, which the parent answers with "complete").
 */
final class FilesystemBackend implements FileBackend {

    private final Path dir;

    FilesystemBackend(Path dir) {
        this.dir = dir;
    }

    @Override
    public long size(String sha) throws IOException {
        try {
            return Files.size(dir.resolve(sha));
        } catch (NoSuchFileException e) {
            return -1;
        }
    }

    @Override
    public void store(String sha, Path verified, boolean toParent) throws IOException {
        Files.move(verified, dir.resolve(sha), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        if (!toParent) {
            Files.writeString(dir.resolve(sha + ".up"), "");
        }
    }

    @Override
    public InputStream open(String sha, long from) throws IOException {
        SeekableByteChannel ch;
        try {
            ch = Files.newByteChannel(dir.resolve(sha));
        } catch (NoSuchFileException e) {
            return null;
        }
        ch.position(from);
        return Channels.newInputStream(ch);
    }

    @Override
    public Optional<Path> localPath(String sha) {
        Path p = dir.resolve(sha);
        return Files.exists(p) ? Optional.of(p) : Optional.empty();
    }

    @Override
    public List<String> toParent() throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            return files.map(f -> f.getFileName().toString()).filter(n -> FileStore.SHA256.matcher(n).matches())
                    .filter(n -> !Files.exists(dir.resolve(n + ".up"))).sorted().toList();
        }
    }

    @Override
    public void sentToParent(String sha) throws IOException {
        Files.writeString(dir.resolve(sha + ".up"), "");
    }

    @Override
    public int purge(Instant cutoff, boolean keepUnsent) throws IOException {
        int n = 0;
        List<Path> old;
        try (Stream<Path> files = Files.list(dir)) {
            old = files.filter(f -> FileStore.SHA256.matcher(f.getFileName().toString()).matches()).toList();
        }
        for (Path f : old) {
            Path up = dir.resolve(f.getFileName() + ".up");
            try {
                if (!Files.getLastModifiedTime(f).toInstant().isBefore(cutoff) || keepUnsent && !Files.exists(up)) {
                    continue;
                }
                Files.delete(f);
                Files.deleteIfExists(up);
                n++;
            } catch (NoSuchFileException gone) {
                // deleted meanwhile
            }
        }
        return n;
    }

    @Override
    public String describe() {
        return "folder " + dir;
    }
}
