// Photos, in memory only: a still from the camera (getUserMedia, the rear camera on phones) or
// a picked image re-encoded through a canvas. Drawing decoded pixels and encoding them again
// leaves every byte of the original file behind, EXIF and GPS included; createImageBitmap's
// `imageOrientation: "from-image"` applies the EXIF orientation to the pixels first, so the
// photo keeps its orientation without the tag.

export const JPEG = "image/jpeg";
const QUALITY = 0.92;
const MAX_EDGE = 4096;

/** The camera's stream shown in `video`: the rear camera where there is one. */
export async function startCamera(video) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { facingMode: { ideal: "environment" }, width: { ideal: 1920 }, height: { ideal: 1080 } },
    audio: false,
  });
  video.srcObject = stream;
  await video.play();
  return stream;
}

export function stopCamera(video) {
  const stream = video.srcObject;
  if (stream) for (const track of stream.getTracks()) track.stop();
  video.srcObject = null;
}

function scaled(width, height) {
  const factor = Math.min(1, MAX_EDGE / Math.max(width, height));
  return [Math.max(1, Math.round(width * factor)), Math.max(1, Math.round(height * factor))];
}

function encodeJpeg(source, sourceWidth, sourceHeight) {
  const [width, height] = scaled(sourceWidth, sourceHeight);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").drawImage(source, 0, 0, width, height);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => {
      canvas.width = 0;
      canvas.height = 0;
      if (blob) resolve(blob);
      else reject(new Error("the photo could not be encoded"));
    }, JPEG, QUALITY);
  });
}

/** The camera's current frame as a JPEG Blob. */
export function snapshot(video) {
  if (!video.videoWidth || !video.videoHeight) throw new Error("the camera is not ready yet");
  return encodeJpeg(video, video.videoWidth, video.videoHeight);
}

/** A picked image file as a new JPEG Blob without its metadata, oriented as it was shown. */
export async function reencode(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  try {
    return await encodeJpeg(bitmap, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}
