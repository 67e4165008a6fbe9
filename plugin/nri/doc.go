// Package nri is trustd's NRI plugin: it judges every container creation
// in ValidateContainerAdjustment (NRI's validation, which fails closed on an
// error, a time-out or an absent plugin when containerd's default validator
// requires "trustd"), or in CreateContainer on containerd releases without
// validation.
//
// What a container can run code from is judged: its image and each image
// volume among its mounts. A name from the request counts only where
// containerd's image store binds it to the image that runs; the namespace
// is the pod sandbox's. Facts that cannot be gathered deny.
package nri
