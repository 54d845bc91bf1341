package org.example.dubbo;

/** A second service (another Dubbo service path), for routing by service. */
public interface InfoService {
    /** The name of the provider instance that answered. */
    String whoami();
}
