#!/bin/bash
# shellcheck disable=SC1091
# DevStack plugin entry point for Fresco. stack.sh, unstack.sh and clean.sh source this file
# with the phase in $1 (stack|unstack|clean) and, for stack, the step in $2.

source "$FRESCO_DIR/devstack/lib/fresco"

if is_service_enabled fresco-api fresco-scheduler fresco-agent; then
    if [[ "$1" == "stack" && "$2" == "pre-install" ]]; then
        fresco_check_prerequisites

    elif [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing Fresco"
        install_fresco

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring Fresco"
        configure_fresco
        if is_service_enabled fresco-api; then
            if is_service_enabled keystone || [[ "$FRESCO_AUTH_STRATEGY" == "keystone" ]]; then
                create_fresco_accounts
            fi
            init_fresco
        fi

    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting Fresco"
        build_fresco_runtimes
        start_fresco
        register_fresco_runtimes

    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        configure_fresco_tempest
        if [[ "$(trueorfalse False FRESCO_SMOKE_TEST)" == "True" ]] && is_service_enabled fresco-api; then
            fresco_smoke_test
        fi
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_fresco
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_fresco
    fi
fi
