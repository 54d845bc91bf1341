package org.example.dubbo;

/** {@link InfoService} of one provider instance. */
public class InfoServiceImpl implements InfoService {
    private final String instance;

    public InfoServiceImpl(String instance) {
        this.instance = instance;
    }

    @Override
    public String whoami() {
        return "info@" + instance;
    }
}
