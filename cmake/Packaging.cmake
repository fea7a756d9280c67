# Debian packages, built by CPack from a build directory:
#
#   cpack -G DEB --config build/release/CPackConfig.cmake -B OUTDIR
#
#   lcache-node  the programs (/usr/bin: lcache-node, lcache-cli, lcache-bench,
#                lcache-sim, lcache-demo), a hardened systemd unit and
#                /etc/default/lcache-node (a conffile); its dependencies from
#                dpkg-shlibdeps
#   lcache-dev   the static libraries, include/lcache and the CMake package
#                (find_package(lcache COMPONENTS ...)), depending on the -dev
#                packages its components link
#
# The unit and the defaults file live outside the prefix, so they are their
# own component ("service"), EXCLUDE_FROM_ALL: a plain `cmake --install` into
# a prefix of one's own never writes to /etc or /lib.

install(FILES packaging/lcache-node.service DESTINATION /lib/systemd/system
  COMPONENT service EXCLUDE_FROM_ALL)
install(FILES packaging/lcache-node.default DESTINATION /etc/default RENAME lcache-node
  COMPONENT service EXCLUDE_FROM_ALL)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/lcache-node
  COMPONENT programs)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME lcache)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "lru_cache developers <lcache@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "distributed read-through cache (groupcache family)")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL programs service dev)
set(CPACK_COMPONENTS_GROUPING ONE_PER_GROUP)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_NODE_PACKAGE_NAME lcache-node)
set(CPACK_DEBIAN_NODE_PACKAGE_SECTION net)
set(CPACK_DEBIAN_NODE_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_NODE_DESCRIPTION
  "lcache-node serves a group over gRPC + JSON (wire-compatible with the Go\nlru_cache), routes misses to their owner by consistent hashing, finds its\npeers statically or through etcd, and loads from an HTTP or PostgreSQL\norigin; with lcache-cli, lcache-bench and a systemd unit.")
set(CPACK_DEBIAN_NODE_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/packaging/postinst
  ${PROJECT_SOURCE_DIR}/packaging/prerm
  ${PROJECT_SOURCE_DIR}/packaging/postrm
  ${PROJECT_SOURCE_DIR}/packaging/conffiles)
set(CPACK_DEBIAN_NODE_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME lcache-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "The lcache C++ library: static libraries, include/lcache and the CMake\npackage, find_package(lcache COMPONENTS core|peer|h2|grpc|etcd|origin|node).")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "libabsl-dev, zlib1g-dev, pkg-config, libnghttp2-dev, libevent-dev, libgrpc++-dev, libprotobuf-dev, libspdlog-dev, libcpp-httplib-dev, libcurl4-openssl-dev, libpq-dev")

include(CPack)
cpack_add_component_group(node)
cpack_add_component_group(dev)
cpack_add_component(programs GROUP node)
cpack_add_component(service GROUP node)
cpack_add_component(dev GROUP dev)
