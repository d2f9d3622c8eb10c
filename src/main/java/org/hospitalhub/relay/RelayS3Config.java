package org.hospitalhub.relay;

import java.util.Optional;

import io.smallrye.config.ConfigMapping;

/** {@code hub.relay.s3.*}: the bucket of {@code hub.relay.file-store=s3} (see application.properties). */
@ConfigMapping(prefix = "hub.relay.s3")
public interface RelayS3Config {

    Optional<String> endpoint();

    String region();

    Optional<String> bucket();

    Optional<String> prefix();

    boolean pathStyle();

    Optional<String> accessKeyId();

    Optional<String> secretAccessKey();
}
