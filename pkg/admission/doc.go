// Package admission is vpcnat-controller's validating admission webhook: it refuses, when
// `kubectl apply` runs, a VpcNatGateway or Subnet that conflicts with another object (an EIP,
// a Vpc, a lanIp, a segment someone else holds), with the rules of pkg/claims, the same ones the
// controller's status path applies later as the level-based guard for races.
//
// It also manages its own serving certificate, with no cert-manager: the leader keeps a
// self-signed CA and a serving certificate in one Secret, renews them at two thirds of their
// validity and patches the CA bundle into the ValidatingWebhookConfiguration; every replica
// reads the Secret and serves the current certificate without a restart.
package admission
